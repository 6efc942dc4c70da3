"""A refused update changes nothing; edge values are refused up front (issue 12, items 5-9).

Each test brings an optimizer into a mid-training state, takes a deep snapshot
(:func:`helpers.deep_snapshot`), does the bad thing, and checks the error type,
that the message names the culprit (parameter path, hyperparameter), and that
nothing moved. The promises are listed in ``docs/reliability.md``.
"""

from __future__ import annotations

import gc
import io
import math
import tracemalloc
import warnings
from typing import Any

import numpy as np
import pytest
from backends import Backend
from helpers import assert_same_snapshot, deep_snapshot, nested_link, set_grads

import corrmom_ref as cr
from corrmom_ref.distributed.multi_node_optimizer import MultiNodeOptimizer
from corrmom_ref.loss_scaling import NonFiniteGradientWarning


def trained(bk: Backend, extra: dict[str, cr.Parameter] | None = None) -> cr.GradientMethod:
    """:func:`nested_link` (plus ``extra`` own parameters, their rules disabled while training)
    after two clean steps with dynamic scaling, holding fresh valid gradients."""
    link = nested_link(bk)
    for name, param in (extra or {}).items():
        link.add(name, param)
    opt = cr.CorrectedMomentumSGD(lr=0.25, momentum=0.5).setup(link)
    opt.loss_scaling(interval=3)
    for param in (extra or {}).values():
        param.update_rule.enabled = False
    for _ in range(2):
        set_grads(bk, link)
        opt.update()
    for param in (extra or {}).values():
        param.update_rule.enabled = True
    set_grads(bk, link, scale=3.0)
    return opt


def assert_fails_cleanly(bk: Backend, opt: Any, action: Any, error: type, match: str) -> None:
    before = deep_snapshot(bk, opt)
    with pytest.raises(error, match=match):
        action()
    assert_same_snapshot(before, deep_snapshot(bk, opt))


# -- item 5: integer and boolean parameters ------------------------------------------


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "cleared-grad"])
def test_integer_or_bool_parameter_is_refused_before_anything_changes(
    bk: Backend, dtype: str, with_grad: bool
) -> None:
    """``/a`` (float32, updated first) beside ``/z`` (integer or bool): the update is refused
    naming ``/z`` and its dtype; ``/a``, every state, every ``t`` and the loss scale stay.

    Chainer 7.8.1 (and the original reference) raise NumPy's ``UFuncTypeError`` from
    ``v *= momentum`` after ``/a`` moved and ``t`` advanced. A cleared gradient would be
    reallocated as integer zeros, so ``/z`` is refused with or without one."""
    z = cr.Parameter(bk.asarray([1, 0, 1], dtype))
    opt = trained(bk, {"z": z})
    if not with_grad:
        z.grad = None
    assert_fails_cleanly(
        bk, opt, opt.update, TypeError, rf"parameter /z has dtype {dtype}: CorrectedMomentumSGDRule"
    )


def test_integer_parameter_with_a_disabled_rule_is_left_alone(bk: Backend) -> None:
    """The way to keep an integer parameter in a model: disable its rule."""
    z = cr.Parameter(bk.asarray([3, 4], "int32"))
    opt = trained(bk, {"z": z})
    z.update_rule.enabled = False
    before = bk.to_numpy(opt.target.a.array)
    opt.update()
    assert not np.array_equal(bk.to_numpy(opt.target.a.array), before)
    np.testing.assert_array_equal(bk.to_numpy(z.array), [3, 4])
    assert z.update_rule.t == 0 and z.update_rule.state is None


BAD_PARAM_LOSS_SCALES = [
    pytest.param("2", TypeError, id="str"),
    pytest.param(np.array(2.0), TypeError, id="0d-array"),
    pytest.param(np.array([2.0, 2.0]), TypeError, id="array"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param(0.0, ValueError, id="zero"),
    pytest.param(0, ValueError, id="int-zero"),
    pytest.param(-4.0, ValueError, id="negative"),
    pytest.param(math.nan, ValueError, id="nan"),
    pytest.param(math.inf, ValueError, id="inf"),
    pytest.param(1e-300, ValueError, id="1e-300"),
    pytest.param(10**400, ValueError, id="10**400"),
]


@pytest.mark.parametrize(("value", "error"), BAD_PARAM_LOSS_SCALES)
def test_bad_param_loss_scale_is_refused_before_anything_changes(
    bk: Backend, value: Any, error: type
) -> None:
    """``param.loss_scale`` divides the gradient; a value that is not a usable scale is refused
    naming the parameter (the original divided by it after ``t`` advanced, or made NaN weights)."""
    opt = trained(bk)
    opt.target.l1.W.loss_scale = value
    assert_fails_cleanly(bk, opt, opt.update, error, r"parameter /l1/W: loss_scale: ")


@pytest.mark.parametrize("value", [np.float64(4.0), np.float32(4.0), 4])
def test_numpy_and_integer_param_loss_scales_are_accepted(bk: Backend, value: Any) -> None:
    """A real-number scale of any Python or NumPy type divides the gradient as a float would."""
    if bk.name == "array_api_strict" and isinstance(value, np.generic):
        pytest.skip("array-api-strict refuses NumPy scalar operands: converted by issue 11's scalar_operand")
    results = []
    for scale in (None, value):
        W = cr.Parameter(bk.asarray([1.0, -1.0], "float32"))
        opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(cr.Link(W=W))
        W.grad = bk.asarray([0.25, 0.5] if scale is None else [1.0, 2.0], "float32")
        W.loss_scale = scale
        opt.update()
        results.append(bk.to_numpy(W.array))
    np.testing.assert_array_equal(results[0], [0.875, -1.25])
    np.testing.assert_array_equal(results[1], results[0])


# -- item 6: a refused update changes nothing -------------------------------------------


def test_refused_update_leaves_cleared_gradients_cleared(bk: Backend) -> None:
    """Cleared (``None``) gradients of other parameters are not reallocated as zeros when
    the update is refused (the original reallocated them before checking)."""
    opt = trained(bk)
    opt.target.a.grad = None
    opt.target.l1.b.grad = None
    opt.target.l1.W.grad = bk.asarray(np.ones(6), "float32")
    assert_fails_cleanly(bk, opt, opt.update, ValueError, r"/l1/W has shape \(6,\)")
    assert opt.target.a.grad is None and opt.target.l1.b.grad is None


class _TwoRankStub:
    """Stands in for a 2-rank communicator whose other rank holds gradients of 1.0:
    ``mean_grads`` averages in place, as :class:`~corrmom_ref.distributed.MpiCommunicator` does."""

    size = 2

    def mean_grads(self, link: Any, nonfinite: bool | None = None) -> bool | None:
        for param in link.params():
            xp = param.xp
            param.grad = (param.grad + xp.ones_like(param.grad)) / 2
        return None if nonfinite is None else bool(nonfinite)


def test_refused_multi_node_update_leaves_gradients_unaveraged(bk: Backend) -> None:
    """Under MPI the gradients were averaged in place before being checked, so a refused
    step left them changed (2.0 -> 1.5); now the check comes first. (The same under real
    MPI: ``tests/distributed/test_refused_update.py``.)"""
    link = cr.Link(
        a=cr.Parameter(bk.asarray([1.0, 2.0], "float32")), b=cr.Parameter(bk.asarray([3.0], "float32"))
    )
    actual = cr.CorrectedMomentumSGD(lr=0.5)
    # Wrapped before its setup, so that MultiNodeOptimizer's own setup collectives
    # (broadcast, agreement checks) are not asked of the stub; update() is the subject.
    opt = MultiNodeOptimizer(actual, _TwoRankStub())  # type: ignore[arg-type]
    actual.setup(link)
    link.a.grad = bk.asarray([2.0, 2.0], "float32")
    link.b.grad = bk.asarray([2.0], "float32")
    opt.actual_optimizer.lr = -1.0
    assert_fails_cleanly(
        bk, opt.actual_optimizer, opt.update, ValueError, r"parameter /a: hyperparameter 'lr'"
    )
    np.testing.assert_array_equal(bk.to_numpy(link.a.grad), [2.0, 2.0])
    opt.actual_optimizer.lr = 0.5
    opt.update()  # a valid step still averages: (2 + 1) / 2
    np.testing.assert_array_equal(bk.to_numpy(link.b.grad), [1.5])


# -- item 7: fp32 master copy refreshed after weights are replaced ---------------------


def float16_only(bk: Backend) -> None:
    if not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")


def _fp16_model_after_one_update(bk: Backend, momentum: float) -> tuple[cr.GradientMethod, cr.Parameter]:
    W = cr.Parameter(bk.asarray([1.0, -2.0, 0.5], "float16"))
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=momentum).setup(cr.Link(W=W))
    opt.use_fp32_update()
    W.grad = bk.asarray([1.0, 1.0, -1.0], "float16")
    opt.update()
    return opt, W


LOADED = [8.0, 16.0, -4.0]


def _assign(bk: Backend, opt: cr.GradientMethod, W: cr.Parameter) -> None:
    W.array = bk.asarray(LOADED, "float16")


def _load_model_snapshot(bk: Backend, opt: cr.GradientMethod, W: cr.Parameter) -> None:
    file = io.BytesIO()
    np.savez(file, W=np.array(LOADED, np.float16))
    file.seek(0)
    cr.serializers.load_npz(file, opt.target)


@pytest.mark.parametrize("replace", [_assign, _load_model_snapshot], ids=["assign", "load_npz"])
def test_fp32_master_is_refreshed_after_the_weights_are_replaced(bk: Backend, replace: Any) -> None:
    """Weights assigned or loaded after the first update survive a zero-gradient step
    (momentum 0: the step changes nothing). Chainer 7.8.1 and the original reference
    wrote the stale master copy over them, giving back the weights of before the load."""
    float16_only(bk)
    opt, W = _fp16_model_after_one_update(bk, momentum=0.0)
    replace(bk, opt, W)
    W.grad = bk.asarray([0.0, 0.0, 0.0], "float16")
    opt.update()
    np.testing.assert_array_equal(bk.to_numpy(W.array), np.array(LOADED, np.float16))


def test_fp32_master_refreshed_step_moves_from_the_loaded_weights(bk: Backend) -> None:
    """With momentum the step after a load starts from the loaded weights, with the kept
    float32 state: w = fp16(fp32(loaded) + lr * (m * v))."""
    float16_only(bk)
    opt, W = _fp16_model_after_one_update(bk, momentum=0.5)
    v = bk.to_numpy(W.update_rule.state["v"]).astype(np.float32)
    _assign(bk, opt, W)
    W.grad = bk.asarray([0.0, 0.0, 0.0], "float16")
    opt.update()
    expected = (np.array(LOADED, np.float32) + np.float32(0.5) * (np.float32(0.5) * v)).astype(np.float16)
    np.testing.assert_array_equal(bk.to_numpy(W.array), expected)


def test_fp32_master_is_kept_while_the_weights_are_the_updates_own(bk: Backend) -> None:
    """Without a replacement the master keeps accumulating below float16's resolution:
    lr * g = 2**-12 per step is lost in float16 but adds up in the master."""
    float16_only(bk)
    W = cr.Parameter(bk.asarray([1.0], "float16"))
    opt = cr.CorrectedMomentumSGD(lr=2.0**-12, momentum=0.0).setup(cr.Link(W=W))
    opt.use_fp32_update()
    for _ in range(8):
        W.grad = bk.asarray([1.0], "float16")
        opt.update()
    assert float(bk.to_numpy(W.array)[0]) == 1.0 - 8 * 2.0**-12


def test_fp32_master_is_rebuilt_after_the_update_was_off(bk: Backend) -> None:
    """Steps taken without the master (``use_fp32_update(False)``) are not undone when it is
    turned on again: the master starts from the current weights."""
    float16_only(bk)
    opt, W = _fp16_model_after_one_update(bk, momentum=0.0)
    opt.use_fp32_update(False)
    W.grad = bk.asarray([2.0, 2.0, 2.0], "float16")
    opt.update()
    moved = bk.to_numpy(W.array)
    opt.use_fp32_update(True)
    W.grad = bk.asarray([0.0, 0.0, 0.0], "float16")
    opt.update()
    np.testing.assert_array_equal(bk.to_numpy(W.array), moved)


# -- item 8: hyperparameter edge values ----------------------------------------------------


@pytest.mark.parametrize("name", ["lr", "momentum"])
def test_huge_integer_hyperparameter_is_refused_naming_it(bk: Backend, name: str) -> None:
    """``10**400`` cannot become a float: a ``ValueError`` naming the hyperparameter (was
    ``OverflowError: int too large to convert to float``), in the constructor and at update."""
    for cls in (cr.CorrectedMomentumSGD, cr.MomentumSGD, cr.CorrectedMomentumSGDRule):
        with pytest.raises(ValueError, match=rf"hyperparameter '{name}' must be finite.*401 digits"):
            cls(**{name: 10**400})
    opt = trained(bk)
    setattr(opt, name, 10**400)
    assert_fails_cleanly(bk, opt, opt.update, ValueError, rf"parameter /a: hyperparameter '{name}'")


BAD_LOSS_SCALES = [
    pytest.param(math.inf, ValueError, id="inf"),
    pytest.param(-math.inf, ValueError, id="-inf"),
    pytest.param(math.nan, ValueError, id="nan"),
    pytest.param(1e-300, ValueError, id="1e-300"),
    pytest.param(10**400, ValueError, id="10**400"),
    pytest.param(2.0**-127, ValueError, id="below-2**-126"),
    pytest.param(2.0**127, ValueError, id="above-2**126"),
    pytest.param(0.0, ValueError, id="zero"),
    pytest.param("8", ValueError, id="str"),  # loss_scaling() has always raised ValueError
    pytest.param(np.array([8.0]), ValueError, id="array"),
    pytest.param(True, ValueError, id="bool"),
]


@pytest.mark.parametrize(("value", "error"), BAD_LOSS_SCALES)
def test_bad_static_loss_scale_is_refused(bk: Backend, value: Any, error: type) -> None:
    """``set_loss_scale`` accepts scales in [2**-126, 2**126] only (Chainer accepts inf, NaN,
    1e-300 and 10**400; the next step then makes every weight NaN or 0)."""
    opt = trained(bk)
    assert_fails_cleanly(bk, opt, lambda: opt.set_loss_scale(value), error, r"^loss scale: ")


@pytest.mark.parametrize("value", [2.0**-126, 2.0**126, 2**126, np.float32(128.0), 65536])
def test_loss_scales_at_the_bounds_are_accepted(value: Any) -> None:
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(W=cr.Parameter(np.zeros(1))))
    opt.set_loss_scale(value)
    assert opt.loss_scale == value


@pytest.mark.parametrize("interval", [2**63, 10**400], ids=["2**63", "10**400"])
def test_huge_loss_scaling_interval_is_refused_before_anything_changes(bk: Backend, interval: int) -> None:
    """An interval a snapshot cannot store (int64) is refused; 10**400 used to raise
    ``OverflowError`` after dynamic scaling had been switched on and the scale reset."""
    opt = trained(bk)
    assert_fails_cleanly(
        bk,
        opt,
        lambda: opt.loss_scaling(interval=interval),
        ValueError,
        r"^interval: must be an integer in \[1, 2\*\*63 - 1\]",
    )


# -- item 9: skipped steps do not grow the warnings registry ---------------------------


def test_skipped_steps_add_no_registry_entry_per_step(bk: Backend) -> None:
    """300 skipped steps under the default filter: the warning is shown (and registered)
    once per parameter, not once per step, and the memory allocated from the optimizer's
    code and kept does not grow with the steps. The original embedded the iteration in
    the message: 300 registry entries, kept with their messages: ~490 B per step."""
    link = nested_link(bk)
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    opt.loss_scaling(interval=2)
    nan = bk.asarray(np.full((2, 3), np.nan), "float32")
    registry = globals().setdefault("__warningregistry__", {})

    def skip_steps(n: int) -> None:
        for _ in range(n):
            set_grads(bk, link)
            link.l1.W.grad = nan
            opt.update()

    # Allocations whose innermost Python frame is in corrmom_ref (the registry entry is
    # made by C code called from the optimizer); a backend's own caches are not ours.
    ours = [tracemalloc.Filter(True, "*corrmom_ref*")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        skip_steps(20)  # warm up caches
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot().filter_traces(ours)
            skip_steps(300)
            gc.collect()  # cyclic garbage (PyTorch leaves some) is not kept
            after = tracemalloc.take_snapshot().filter_traces(ours)
        finally:
            tracemalloc.stop()
    assert opt.t == 320 and link.l1.W.update_rule.t == 0
    shown = [w.message for w in caught if isinstance(w.message, NonFiniteGradientWarning)]
    # One message for every step (Dask resets the registry when it changes warning filters,
    # so there the one message is shown again, but never a new one).
    assert len({str(m) for m in shown}) == 1 and shown[0].path == "/l1/W" and shown[0].iteration == 0
    if bk.name != "dask":
        assert len(shown) == 1
    entries = [key for key in registry if key != "version" and "param.grad of /l1/W" in str(key[0])]
    assert len(entries) == 1, entries
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    if bk.name == "dask":  # Dask's lazy graphs are built from our frames; the registry is checked above
        return
    assert grown < 10_000, f"memory kept from corrmom_ref code grew by {grown} bytes over 300 skipped steps"


def test_every_skipped_step_is_still_reported_to_who_asks(bk: Backend) -> None:
    """With the ``always`` filter every skipped step warns, with its iteration and scale."""
    link = nested_link(bk)
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    opt.loss_scaling(interval=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            set_grads(bk, link)
            link.a.grad = bk.asarray([np.inf, 0.0, 0.0], "float32")
            opt.update()
    got = [(w.message.path, w.message.iteration, w.message.loss_scale) for w in caught]
    assert got == [("/a", 0, 1.0), ("/a", 1, 1.0), ("/a", 2, 1.0)]  # the scale stays at its floor 1
