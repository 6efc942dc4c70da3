"""Family 4: a non-finite gradient under dynamic loss scaling skips the whole step.

NaN, +inf or -inf in any element of any parameter's gradient: no parameter
and no state changes, the optimizer's ``t`` still advances, each rule's ``t``
does not, and a warning names the offending parameter.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import oracle
from conformance.applicability import require
from conformance.compare import drive

NAMES = ("alpha", "beta", "gamma")
W0 = {n: np.array([1.0, 2.0, 3.0]) * (i + 1) for i, n in enumerate(NAMES)}


def _grads(scale: float) -> dict[str, np.ndarray]:
    return {n: np.array([0.5, -1.0, 0.25]) * scale * (i + 1) for i, n in enumerate(NAMES)}


@st.composite
def _bad_steps(draw: st.DrawFn) -> list[oracle.Step]:
    n_steps = draw(st.integers(2, 8))
    steps = []
    for t in range(n_steps):
        grads = _grads(1.0 + t)
        bad = draw(st.booleans()) if t else False
        if bad:
            name = draw(st.sampled_from(NAMES))
            g = grads[name].copy()
            g[draw(st.integers(0, 2))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            grads[name] = g
        steps.append(oracle.Step(grads, dict.fromkeys(NAMES, 0.5), dict.fromkeys(NAMES, 0.9), skip=bad))
    return steps


@given(steps=_bad_steps())
def test_nonfinite_gradient_skips_whole_step(impl: object, steps: list[oracle.Step]) -> None:
    """Parameters follow eq. (9) with the bad steps left out; states are untouched by them."""
    require(impl, "dynamic_loss_scaling", "nan_skipping")
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    run.loss_scaling(interval=2)
    check_state = {"state", "chainer_sign"} <= impl.capabilities  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drive(run, steps, oracle.eq9(W0, steps, exact=True), np.dtype(np.float64), check_state=check_state)


def _one_bad_step(impl: object, bad: str = "beta") -> tuple[object, list[warnings.WarningMessage]]:
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    run.loss_scaling()
    run.step(_grads(1.0))
    grads = _grads(2.0)
    grads[bad] = np.array([0.0, np.nan, 0.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.step(grads)
    return run, caught


def test_optimizer_t_advances_rule_t_does_not(impl: object) -> None:
    """On a skipped step the optimizer counts the step, the rules do not."""
    require(impl, "dynamic_loss_scaling", "nan_skipping", "step_counters")
    run, _ = _one_bad_step(impl)
    assert run.t() == 2, f"optimizer t after a clean and a skipped step: {run.t()}, expected 2"
    for n in NAMES:
        assert run.rule_t(n) == 1, f"rule t of {n} after a skipped step: {run.rule_t(n)}, expected 1"


def test_states_untouched_on_skip(impl: object) -> None:
    """The momentum state of every parameter is exactly as before the skipped step."""
    require(impl, "dynamic_loss_scaling", "nan_skipping", "state")
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    run.loss_scaling()
    run.step(_grads(1.0))
    before = {n: run.velocity(n).copy() for n in NAMES}
    params = run.params()
    grads = _grads(2.0)
    grads["gamma"] = np.array([np.inf, 0.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.step(grads)
    for n in NAMES:
        np.testing.assert_array_equal(run.velocity(n), before[n], err_msg=f"state of {n} changed")
        np.testing.assert_array_equal(run.params()[n], params[n], err_msg=f"parameter {n} changed")


@pytest.mark.parametrize("bad", NAMES)
def test_warning_names_the_parameter(impl: object, bad: str) -> None:
    """The warning of a skipped step names the parameter whose gradient was not finite."""
    require(impl, "dynamic_loss_scaling", "nan_skipping")
    _, caught = _one_bad_step(impl, bad)
    texts = [str(w.message) for w in caught]
    assert any(re.search(rf"\b{bad}\b", t) for t in texts), f"no warning names {bad}: {texts}"
    others = [n for n in NAMES if n != bad]
    assert not any(re.search(rf"\b{n}\b", t) for t in texts for n in others), texts
