"""Family 3: Chainer's loss-scale policy, exactly.

Dynamic scaling starts at 1, doubles after every step until the first
non-finite gradient ever, halves on every non-finite step, and afterwards
doubles once per ``interval`` clean steps (``x 2**(1/interval)`` each), always
clamped to ``[1, 65504]``. The expected sequence comes from
:func:`conformance.oracle.loss_scale_sequence`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import oracle
from conformance.applicability import require
from conformance.compare import drive
from conformance.strategies import cases
from conformance.tolerances import SCALE_RTOL

W0 = {"W": np.array([1.0, -1.0], dtype=np.float32)}
CLEAN = {"W": np.array([0.5, 0.25], dtype=np.float32)}
OVERFLOW = {"W": np.array([np.inf, 0.25], dtype=np.float32)}


def _scales(impl: object, overflows: list[bool], interval: int) -> list[float]:
    run = impl.make(W0, lr=0.01, momentum=0.9)  # type: ignore[attr-defined]
    run.loss_scaling(interval=interval)
    seen = [run.loss_scale()]
    with pytest.warns(UserWarning) if any(overflows) else _nothing():
        for overflow in overflows:
            run.step(OVERFLOW if overflow else CLEAN)
            seen.append(run.loss_scale())
    return seen


class _nothing:  # noqa: N801
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _assert_sequence(got: list[float], want: list[float]) -> None:
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g is not None and math.isclose(g, w, rel_tol=SCALE_RTOL), (
            f"loss scale after {k} steps is {g}, expected {w}; first divergence at step {k} "
            f"(expected sequence {want[: k + 1]})")


@given(overflows=st.lists(st.booleans(), min_size=1, max_size=40),
       interval=st.one_of(st.integers(1, 6), st.sampled_from([1000])))
def test_dynamic_scale_sequence(impl: object, overflows: list[bool], interval: int) -> None:
    """The scale after every step, for generated overflow patterns and intervals."""
    require(impl, "dynamic_loss_scaling")
    _assert_sequence(_scales(impl, overflows, interval), oracle.loss_scale_sequence(overflows, interval))


def test_doubles_every_step_before_first_overflow(impl: object) -> None:
    """Exact powers of two from 1, then the clamp at 65504."""
    require(impl, "dynamic_loss_scaling")
    got = _scales(impl, [False] * 18, interval=1000)
    assert got == [float(2**k) for k in range(16)] + [65504.0, 65504.0, 65504.0]


@given(interval=st.integers(1, 8), k=st.integers(1, 3), first=st.integers(1, 8))
def test_doubles_once_per_interval_after_overflow(impl: object, interval: int, k: int, first: int) -> None:
    """After an overflow, ``k * interval`` clean steps multiply the scale by exactly ``2**k``."""
    require(impl, "dynamic_loss_scaling")
    got = _scales(impl, [False] * first + [True] + [False] * (k * interval), interval)
    after_overflow = got[first + 1]
    assert after_overflow == 2.0 ** (first - 1)
    assert math.isclose(got[-1], after_overflow * 2**k, rel_tol=SCALE_RTOL), (
        f"interval {interval}: scale went {after_overflow} -> {got[-1]} in {k * interval} clean steps, "
        f"expected x{2**k}; sequence {got}")


def test_clamped_to_one_below(impl: object) -> None:
    """Overflows at scale 1 keep it at 1."""
    require(impl, "dynamic_loss_scaling")
    assert _scales(impl, [True, True, True], interval=2) == [1.0, 1.0, 1.0, 1.0]


def test_static_scale_stays_and_is_unscaled(impl: object) -> None:
    """A static scale never changes, and gradients reach the update divided by it."""
    require(impl, "static_loss_scaling")
    run = impl.make(W0, lr=0.5, momentum=0.5)  # type: ignore[attr-defined]
    run.loss_scaling(scale=128.0)
    steps = [oracle.Step(CLEAN, {"W": 0.5}, {"W": 0.5})] * 4
    drive(run, steps, oracle.eq9(W0, steps, exact=True), np.dtype(np.float32))
    assert run.loss_scale() == 128.0


@given(data=st.data())
def test_dynamic_scaling_is_transparent(impl: object, data: st.DataObject) -> None:
    """Without overflows, dynamic scaling does not change the trajectory (gradients are unscaled)."""
    require(impl, "dynamic_loss_scaling")
    case = data.draw(cases(dtypes=("float64",), constant_lr=True,
                           cleared="cleared_grad_moves" in impl.capabilities))  # type: ignore[attr-defined]
    n = next(iter(case.w0))
    run = impl.make(case.w0, lr=case.steps[0].lr[n], momentum=case.steps[0].momentum[n])  # type: ignore[attr-defined]
    run.loss_scaling(interval=3)
    drive(run, case.steps, oracle.eq9(case.w0, case.steps, exact=True), case.dtype)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -3}, {"scale": 0.0}, {"scale": -1.0}])
def test_argument_validation(impl: object, kwargs: dict[str, float]) -> None:
    """interval < 1 (dynamic) and scale <= 0 (static) raise ValueError."""
    require(impl, "loss_scaling_validation")
    run = impl.make(W0, lr=0.01, momentum=0.9)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        run.loss_scaling(**kwargs)
