"""Dynamic and static loss scaling, NaN skipping and the float32 master update."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from backends import Backend
from helpers import assert_same_snapshot, deep_snapshot, nested_link, set_grads
from hypothesis import given
from hypothesis import strategies as st

import corrmom_ref as cr
from corrmom_conformance.oracle import LOSS_SCALE_MAX, loss_scale_log2_sequence
from corrmom_ref.loss_scaling import NonFiniteGradientWarning


@given(
    interval=st.integers(1, 5),
    flags=st.lists(st.booleans() | st.just(False), min_size=1, max_size=30),
)
def test_dynamic_scale_schedule(bk: Backend, interval: int, flags: list[bool]) -> None:
    """The scale after each step follows the rule, computed in log2 space by the oracle."""
    W = cr.Parameter(bk.asarray([1.0, 2.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(cr.Link(W=W))
    opt.loss_scaling(interval=interval)
    assert opt.loss_scale == 1.0
    expected = loss_scale_log2_sequence(flags, interval)
    for step, (bad, level) in enumerate(zip(flags, expected, strict=True), start=1):
        W.grad = bk.asarray([math.inf if bad else 1.0, 1.0], "float32")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.update()
        assert any("/W" in str(w.message) for w in caught) == bad
        if level == math.log2(LOSS_SCALE_MAX):
            assert opt.loss_scale == LOSS_SCALE_MAX, f"step {step}: clamped at 65504"
        else:
            assert abs(math.log2(opt.loss_scale) - level) < 1e-12 * step, f"step {step}"
        assert opt.t == step
        assert W.update_rule.t == step - sum(flags[:step])


def test_dynamic_scale_is_capped_at_float16_max(bk: Backend) -> None:
    """16 doublings reach 65536 > 65504: capped at 65504 exactly; an overflow then halves it."""
    W = cr.Parameter(bk.asarray([1.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=0.0).setup(cr.Link(W=W))
    opt.loss_scaling(interval=1)
    for step in range(1, 18):
        W.grad = bk.asarray([1.0], "float32")
        opt.update()
        assert opt.loss_scale == min(2.0**step, 65504.0)
    W.grad = bk.asarray([math.nan], "float32")
    with pytest.warns(UserWarning, match="/W"):
        opt.update()
    assert opt.loss_scale == 65504.0 / 2


def test_nonfinite_step_is_skipped(bk: Backend) -> None:
    """A NaN anywhere: t advances, no rule runs, nothing moves, the warning names the parameter."""
    link = nested_link(bk)
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(link)
    opt.loss_scaling(interval=4)
    for _ in range(2):  # clean steps: scale 1 -> 2 -> 4
        set_grads(bk, link)
        opt.update()
    set_grads(bk, link)
    grad = np.array(bk.to_numpy(link.l1.W.grad))
    grad[1, 2] = np.nan
    link.l1.W.grad = bk.asarray(grad, "float32")
    before = deep_snapshot(bk, opt)
    with pytest.warns(NonFiniteGradientWarning, match=r"param\.grad of /l1/W: ") as caught:
        opt.update()
    (warning,) = [w.message for w in caught if isinstance(w.message, NonFiniteGradientWarning)]
    assert (warning.path, warning.iteration, warning.loss_scale) == ("/l1/W", 2, 4.0)
    after = deep_snapshot(bk, opt)
    assert (after["t"], after["loss_scale"]) == (3, 2.0)
    for key in ("t", "loss_scale", "isnan_ever"):
        before[key] = after[key]
    assert_same_snapshot(before, after)  # every array, state and rule t as before
    assert [p.update_rule.t for p in link.params()] == [2, 2, 2]


def test_static_scale_divides_gradients(bk: Backend) -> None:
    """backward(loss_scale=s) scales the gradient; the rule divides it back before updating."""
    W = cr.Parameter(bk.asarray([1.0, -1.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(cr.Link(W=W))
    opt.set_loss_scale(8.0)
    g = bk.asarray([0.25, 0.5], "float32")
    opt.update(lambda: cr.ScriptedLoss({W: g}))
    assert W.loss_scale == 8.0
    np.testing.assert_array_equal(bk.to_numpy(W.update_rule.state["v"]), [-0.25, -0.5])
    np.testing.assert_array_equal(bk.to_numpy(W.array), [0.875, -1.25])
    assert opt.loss_scale == 8.0  # static: never moves


def test_dynamic_loss_scale_overflow_in_float16(bk: Backend) -> None:
    """float16 gradients overflow once the scale gets big; those steps are skipped."""
    if not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")
    W = cr.Parameter(bk.asarray([0.0], "float16"))
    opt = cr.CorrectedMomentumSGD(lr=1.0, momentum=0.0).setup(cr.Link(W=W))
    opt.loss_scaling(interval=2)
    g = bk.asarray([1024.0], "float16")  # 1024 * 64 = 65536 > 65504 overflows
    scales, moves = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(9):
            before = float(bk.to_numpy(W.array)[0])
            opt.update(lambda: cr.ScriptedLoss({W: g}))
            scales.append(opt.loss_scale)
            moves.append(float(bk.to_numpy(W.array)[0]) != before)
    # 1 2 4 8 16 32 clean (w -= 1024 each), 64 overflows -> 32, then x sqrt(2) per clean step
    assert moves == [True] * 6 + [False] + [True, True]
    expected = loss_scale_log2_sequence([False] * 6 + [True, False, False], interval=2)
    np.testing.assert_allclose(np.log2(scales), expected, atol=1e-12)
    assert float(bk.to_numpy(W.array)[0]) == -1024.0 * 8


def float16_only(bk: Backend) -> None:
    if not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")


def test_fp32_master_keeps_updates_below_float16_resolution(bk: Backend) -> None:
    """lr*g = 2**-12 is below half an ulp of 1.0 in float16: only a float32 master accumulates it."""
    float16_only(bk)
    results = {}
    for flag in (False, True):
        W = cr.Parameter(bk.asarray([1.0], "float16"))
        opt = cr.CorrectedMomentumSGD(lr=2.0**-12, momentum=0.0).setup(cr.Link(W=W))
        if flag:
            opt.use_fp32_update()
        for _ in range(8):
            W.grad = bk.asarray([1.0], "float16")
            opt.update()
        assert W.array.dtype == bk.dtype("float16")
        results[flag] = float(bk.to_numpy(W.array)[0])
        state_dtype = bk.to_numpy(W.update_rule.state["v"]).dtype
        assert state_dtype == (np.float32 if flag else np.float16)
    assert results[False] == 1.0  # 1 - 2**-12 rounds back to 1 every step
    assert results[True] == 1.0 - 8 * 2.0**-12  # exact in float32, then exact in float16


def test_fp32_update_set_before_setup_applies_to_new_rules(bk: Backend) -> None:
    float16_only(bk)
    W = cr.Parameter(bk.asarray([1.0], "float16"))
    opt = cr.CorrectedMomentumSGD(lr=2.0**-12, momentum=0.0)
    opt.use_fp32_update()
    opt.setup(cr.Link(W=W))
    for _ in range(4):
        W.grad = bk.asarray([1.0], "float16")
        opt.update()
    assert float(bk.to_numpy(W.array)[0]) == 1.0 - 4 * 2.0**-12


def test_fp32_master_with_loss_scale(bk: Backend) -> None:
    """The scaled float16 gradient is cast to float32, then divided by the scale."""
    float16_only(bk)
    W = cr.Parameter(bk.asarray([1.0], "float16"))
    opt = cr.CorrectedMomentumSGD(lr=2.0**-12, momentum=0.0).setup(cr.Link(W=W))
    opt.use_fp32_update()
    opt.set_loss_scale(1024.0)
    g = bk.asarray([1.0], "float16")
    for _ in range(4):
        opt.update(lambda: cr.ScriptedLoss({W: g}))
    assert float(bk.to_numpy(W.array)[0]) == 1.0 - 4 * 2.0**-12


def test_fp32_update_leaves_other_dtypes_alone(bk: Backend) -> None:
    """With the flag on, a float32 parameter updates as usual, on every backend.

    (Backends without a float16 attribute in their namespace, array-api-strict
    and Dask, used to raise AttributeError here.)
    """
    W = cr.Parameter(bk.asarray([1.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.0).setup(cr.Link(W=W))
    opt.use_fp32_update()
    W.grad = bk.asarray([1.0], "float32")
    opt.update()
    np.testing.assert_array_equal(bk.to_numpy(W.array), np.array([0.5], np.float32))
    assert W.update_rule.state["v"].dtype == W.array.dtype
