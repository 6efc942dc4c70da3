"""Family 3: the loss scale over a run, exactly (Chainer's doubling policy).

The oracle (:class:`corrmom_conformance.oracle.LossScaleModel`) starts at 1, doubles
every step until the first non-finite gradient ever, halves on every
non-finite step, afterwards grows by 2**(1/interval) per clean step (so it
doubles once per ``interval`` clean steps), and stays within [1, 65504].
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrmom_conformance.checks._support import assert_trajectory, gradients, oracle_eq9, problem, quiet, run
from corrmom_conformance.oracle import LOSS_SCALE_MAX, LossScaleModel
from corrmom_conformance.report import NA_PREFIX
from corrmom_conformance.tolerances import LOSS_SCALE_RTOL, bitwise_equal

pytestmark = pytest.mark.requires("loss_scaling")


def _grads_for(pattern: list[bool]) -> list[dict[str, np.ndarray]]:
    """One small gradient per step; a step marked True carries an infinity."""
    out = []
    for overflow in pattern:
        g = np.array([0.25, -0.5], dtype=np.float32)
        if overflow:
            g[1] = np.inf
        out.append({"w": g})
    return out


def _scales(adapter, pattern: list[bool], interval: int) -> list[float | None]:
    opt = adapter.create({"w": np.zeros(2, np.float32)}, lr=0.01, momentum=0.9)
    opt.loss_scaling(interval=interval)
    out = []
    with quiet():
        for g in _grads_for(pattern):
            opt.step(g)
            out.append(opt.loss_scale)
    return out


def _expected(pattern: list[bool], interval: int) -> list[float]:
    model = LossScaleModel()
    model.configure(interval=interval)
    out = []
    for overflow in pattern:
        model.after_step(overflow)
        assert model.scale is not None
        out.append(model.scale)
    return out


def _assert_scales(got: list[float | None], want: list[float]) -> None:
    for t, (g, w) in enumerate(zip(got, want, strict=True), start=1):
        assert g is not None and math.isclose(g, w, rel_tol=LOSS_SCALE_RTOL), (
            f"loss scale after step {t} is {g}, expected {w} (sequence so far {got[:t]})"
        )


@given(interval=st.integers(1, 6), pattern=st.lists(st.booleans(), min_size=1, max_size=30))
def test_dynamic_scale_sequence(adapter, interval, pattern):
    """The whole scale sequence for a generated overflow pattern and interval."""
    _assert_scales(_scales(adapter, pattern, interval), _expected(pattern, interval))


@pytest.mark.parametrize("interval", [1, 2, 3, 7])
def test_doubles_once_per_interval_after_an_overflow(adapter, interval):
    """After the first overflow the scale doubles after exactly ``interval`` clean steps, not before."""
    pattern = [False] * 3 + [True] + [False] * (3 * interval)
    got = _scales(adapter, pattern, interval)
    after_overflow = got[3]
    assert after_overflow is not None and math.isclose(after_overflow, 4.0, rel_tol=LOSS_SCALE_RTOL), (
        f"scale right after the overflow is {after_overflow}, expected 4.0 (half of 8): {got}"
    )
    for k in range(1, 4):
        scale = got[3 + k * interval]
        assert scale is not None and math.isclose(scale, 4.0 * 2**k, rel_tol=LOSS_SCALE_RTOL), (
            f"after {k * interval} clean steps the scale is {scale}, expected {4.0 * 2**k} ({got})"
        )
        if interval > 1:
            before = got[3 + k * interval - 1]
            assert before is not None and before < 4.0 * 2**k * (1 - 1e-6), f"doubled early: {got}"


def test_doubles_every_step_before_any_overflow(adapter):
    """Before the first overflow ever, the scale doubles on every step, whatever the interval."""
    got = _scales(adapter, [False] * 6, interval=1000)
    _assert_scales(got, [2.0, 4.0, 8.0, 16.0, 32.0, 64.0])


def test_clamped_to_65504(adapter):
    """The scale never exceeds the largest float16, 65504; a halving from the cap gives 32752."""
    got = _scales(adapter, [False] * 20 + [True], interval=1)
    highest = max(s for s in got if s is not None)
    assert highest <= LOSS_SCALE_MAX, f"the scale reached {highest}, above 65504: {got}"
    _assert_scales(got[15:], [LOSS_SCALE_MAX] * 5 + [LOSS_SCALE_MAX / 2])


def test_clamped_at_one(adapter):
    """Halving never takes the scale below 1."""
    got = _scales(adapter, [True] * 5, interval=2)
    _assert_scales(got, [1.0] * 5)


def test_static_scale_stays_and_leaves_trajectory_unchanged(adapter):
    """A static scale does not move, and gradients are unscaled before the update."""
    params = problem(5, {"w": (3,)})
    grads = gradients(5, params, 6)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.loss_scaling(scale=128.0)
    got = run(opt, grads)
    assert opt.loss_scale == 128.0
    assert_trajectory(got, oracle_eq9(params, grads, [0.1] * 6, [0.9] * 6), np.float32)


def test_dynamic_scaling_leaves_clean_trajectory_unchanged(adapter):
    """Without overflows, dynamic scaling changes nothing but the scale: the trajectory is eq. (9)."""
    params = problem(6, {"w": (3,), "b": (2,)})
    grads = gradients(6, params, 8)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.loss_scaling(interval=2)
    got = run(opt, grads)
    assert_trajectory(got, oracle_eq9(params, grads, [0.1] * 8, [0.9] * 8), np.float32)


@pytest.mark.parametrize("interval", [0, -1])
def test_rejects_interval_below_one(adapter, interval):
    opt = adapter.create({"w": np.zeros(2, np.float32)}, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError):
        opt.loss_scaling(interval=interval)


@pytest.mark.parametrize("scale", [0.0, -2.0])
def test_rejects_non_positive_static_scale(adapter, scale):
    opt = adapter.create({"w": np.zeros(2, np.float32)}, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError):
        opt.loss_scaling(scale=scale)


@pytest.mark.parametrize("interval", [1, 2])
def test_capped_at_65504_after_an_overflow(adapter, interval):
    """Overflow first, then more clean steps than the cap needs: the slow growth is capped at 65504 too."""
    pattern = [False] * 2 + [True] + [False] * (16 * interval + 4)
    got = _scales(adapter, pattern, interval)
    _assert_scales(got, _expected(pattern, interval))
    assert got[-1] == LOSS_SCALE_MAX


@pytest.mark.requires("float16")
def test_large_finite_scaled_float16_gradients_are_not_overflows(adapter):
    """float16 gradients of 1000 scaled by 1, 2, ..., 64 (up to 64000, below 65504) are finite: each step is applied and the scale doubles; at 128 they overflow."""
    opt = adapter.create({"w": np.zeros(2, np.float16)}, lr=2.0**-12, momentum=0.0)
    opt.loss_scaling(interval=1000)
    g = {"w": np.array([1000.0, -1000.0], np.float16)}
    with quiet():
        for step in range(1, 8):
            before = opt.params()["w"]
            opt.step(g)
            after = opt.params()["w"]
            assert not np.array_equal(before, after), (
                f"step {step} (scaled gradient {1000 * 2 ** (step - 1)}, finite) was skipped"
            )
            assert opt.loss_scale == 2.0**step, (
                f"loss scale after step {step} is {opt.loss_scale}, expected {2.0**step}"
            )
        before = opt.params()["w"]
        opt.step(g)  # 1000 * 128 overflows float16
    assert bitwise_equal(before, opt.params()["w"]), (
        "the overflowing step (1000 * 128 in float16) was applied"
    )
    assert opt.loss_scale == 64.0, f"loss scale after the overflow is {opt.loss_scale}, expected 64"


@pytest.mark.parametrize(
    ("dtype", "grad", "lr"),
    [("float32", 7.0e4, 2.0**-12), ("float64", 1.0e38, 1.0e-40)],
    ids=["float32", "float64"],
)
def test_large_finite_float32_and_float64_gradients_are_not_overflows(adapter, dtype, grad, lr):
    """Gradients above float16's 65504 (float32: 7e4; float64: 1e38, whose scaled values pass float32's
    largest, 3.4e38) are finite in their own dtype: each step is applied and the scale doubles."""
    if dtype == "float64" and "float64" not in adapter.capabilities:
        pytest.skip(f"{NA_PREFIX}lacks capability float64")
    kind = np.dtype(dtype)
    opt = adapter.create({"w": np.zeros(2, kind)}, lr=lr, momentum=0.0)
    opt.loss_scaling(interval=1000)
    g = {"w": np.array([grad, -grad], kind)}
    with quiet():
        for step in range(1, 7):
            before = opt.params()["w"]
            opt.step(g)
            after = opt.params()["w"]
            assert not bitwise_equal(before, after), (
                f"step {step} ({dtype} gradient {grad:g} scaled by {2.0 ** (step - 1):g}, finite) was skipped"
            )
            assert opt.loss_scale == 2.0**step, (
                f"loss scale after step {step} is {opt.loss_scale}, expected {2.0**step} (no overflow in {dtype})"
            )
