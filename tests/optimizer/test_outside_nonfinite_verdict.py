"""GradientMethod.set_outside_nonfinite_verdict: a step marked non-finite from outside.

And the MPI wrapper goes through that seam, writing no private attribute of
the optimizer it wraps (checked serially, with a one-rank stand-in
communicator).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref.distributed import MultiNodeOptimizer


def _model() -> tuple[cr.Link, cr.Parameter]:
    W = cr.Parameter(np.array([1.0, -2.0], dtype=np.float32))
    return cr.Link(W=W), W


def _step(opt: cr.GradientMethod, W: cr.Parameter, grad: list[float]) -> list[warnings.WarningMessage]:
    W.grad = np.array(grad, dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.update()
    return caught


def test_a_true_verdict_skips_the_step_as_a_nonfinite_gradient_would() -> None:
    link, W = _model()
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    opt.loss_scaling(interval=1)
    _step(opt, W, [1.0, 1.0])  # a finite step: the scale doubles to 2
    before = W.array.copy()
    opt.set_outside_nonfinite_verdict(lambda: True)
    caught = _step(opt, W, [1.0, 1.0])
    np.testing.assert_array_equal(W.array, before)
    assert (opt.t, W.update_rule.t, opt.loss_scale) == (2, 1, 1.0)
    assert not opt.is_safe_to_update()
    assert caught == []  # the local gradients are finite: nothing to name


def test_a_false_verdict_changes_nothing() -> None:
    link, W = _model()
    twin_link, twin_W = _model()
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    twin = cr.CorrectedMomentumSGD(lr=0.5).setup(twin_link)
    for o in (opt, twin):
        o.loss_scaling(interval=1)
    opt.set_outside_nonfinite_verdict(lambda: False)
    for grad in ([1.0, 1.0], [math.inf, 1.0], [0.5, -0.5]):
        _step(opt, W, grad)
        _step(twin, twin_W, grad)
        np.testing.assert_array_equal(W.array, twin_W.array)
        assert (opt.t, opt.loss_scale, opt.is_safe_to_update()) == (
            twin.t,
            twin.loss_scale,
            twin.is_safe_to_update(),
        )


def test_the_verdict_is_asked_once_per_step_and_only_with_dynamic_scaling() -> None:
    link, W = _model()
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    asked: list[int] = []
    opt.set_outside_nonfinite_verdict(lambda: asked.append(opt.t) or True)
    _step(opt, W, [1.0, 1.0])
    assert asked == [] and W.update_rule.t == 1  # no loss scaling: not asked, the step is taken
    assert not opt.dynamic_loss_scaling
    opt.loss_scaling()
    assert opt.dynamic_loss_scaling
    _step(opt, W, [1.0, 1.0])
    assert asked == [1] and W.update_rule.t == 1


def test_none_removes_the_verdict_and_a_non_callable_is_refused() -> None:
    link, W = _model()
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    opt.loss_scaling()
    opt.set_outside_nonfinite_verdict(lambda: True)
    opt.set_outside_nonfinite_verdict(None)
    _step(opt, W, [1.0, 1.0])
    assert W.update_rule.t == 1
    with pytest.raises(TypeError, match="verdict must be callable or None, got bool"):
        opt.set_outside_nonfinite_verdict(True)  # type: ignore[arg-type]


class _OneRank:
    """A one-rank stand-in for MpiCommunicator whose "agreed" verdict is set by the test."""

    def __init__(self) -> None:
        self.others_nonfinite = False
        self.verdicts: list[bool | None] = []

    def allgather_bytes(self, data: bytes, what: str = "") -> list[bytes]:
        return [data]

    def bcast_data(self, link: object, root: int = 0) -> None:
        pass

    def mean_grads(
        self, link: object, nonfinite: bool | None = None, fingerprint: bytes = b""
    ) -> bool | None:
        self.verdicts.append(nonfinite)
        return None if nonfinite is None else nonfinite or self.others_nonfinite


def test_the_mpi_wrapper_uses_the_seam_and_writes_no_private_attribute() -> None:
    link, W = _model()
    actual = cr.CorrectedMomentumSGD(lr=0.5)
    comm = _OneRank()
    opt = MultiNodeOptimizer(actual, comm).setup(link)  # type: ignore[arg-type]
    opt.loss_scaling(interval=1)
    _step(opt, W, [1.0, 1.0])
    own_before = set(vars(actual))  # after a step: the optimizer's own flags exist
    comm.others_nonfinite = True  # another rank overflowed
    before = W.array.copy()
    caught = _step(opt, W, [1.0, 1.0])
    np.testing.assert_array_equal(W.array, before)
    assert (actual.t, W.update_rule.t, actual.loss_scale, caught) == (2, 1, 1.0, [])
    assert comm.verdicts == [False, False]  # this rank's own gradients were finite both times
    assert set(vars(actual)) == own_before  # nothing patched in
    assert "check_nan_in_grads" not in vars(actual)


def test_dynamic_loss_scaling_stays_on_after_a_static_scale_as_in_chainer() -> None:
    opt = cr.CorrectedMomentumSGD().setup(_model()[0])
    opt.set_loss_scale(4.0)
    assert not opt.dynamic_loss_scaling
    opt.loss_scaling()
    with pytest.warns(UserWarning, match="dynamic policy stays on"):
        opt.set_loss_scale(4.0)
    assert opt.dynamic_loss_scaling
