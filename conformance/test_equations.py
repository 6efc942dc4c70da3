"""Family 1: equation-level invariants of Goyal et al. eq. (9)/(10), against the suite's oracle.

Every trajectory is compared after every step with :mod:`conformance.oracle`
(exact fractions for small cases, float64 for larger ones); tolerances come
from :mod:`conformance.tolerances`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from conformance import oracle
from conformance.applicability import require
from conformance.compare import drive
from conformance.strategies import cases, lr_schedules, momenta
from conformance.tolerances import float16_master_atol


def _cleared_ok(impl: object) -> bool:
    return "cleared_grad_moves" in impl.capabilities  # type: ignore[attr-defined]


def _run(impl: object, case: object, fp32_update: bool = False) -> object:
    first = case.steps[0]  # type: ignore[attr-defined]
    name0 = next(iter(case.w0))  # type: ignore[attr-defined]
    run = impl.make(case.w0, lr=first.lr[name0], momentum=first.momentum[name0],  # type: ignore[attr-defined]
                    fp32_update=fp32_update)
    return run


def _set_hyper(run: object, per_param: bool) -> object:
    def before(_k: int, step: oracle.Step) -> None:
        for n in step.lr:
            if per_param:
                run.set_lr(step.lr[n], n)  # type: ignore[attr-defined]
                run.set_momentum(step.momentum[n], n)  # type: ignore[attr-defined]
        if not per_param:
            n = next(iter(step.lr))
            run.set_lr(step.lr[n])  # type: ignore[attr-defined]
            run.set_momentum(step.momentum[n])  # type: ignore[attr-defined]
    return before


@given(data=st.data())
def test_eq9_trajectory_exact(impl: object, data: st.DataObject) -> None:
    """Changing lr (warm-up, step decay, arbitrary): parameters follow eq. (9) exactly computed."""
    require(impl, "eq9")
    case = data.draw(cases(cleared=_cleared_ok(impl), changing_momentum=True))
    run = _run(impl, case)
    drive(run, case.steps, oracle.eq9(case.w0, case.steps, exact=True), case.dtype,
          before_step=_set_hyper(run, per_param=False))


@given(data=st.data())
def test_eq10_with_correction_equivalent(impl: object, data: st.DataObject) -> None:
    """Under changing lr the implementation equals eq. (10) *with* the correction lr_{t+1}/lr_t."""
    require(impl, "eq9")
    case = data.draw(cases(cleared=_cleared_ok(impl)))
    run = _run(impl, case)
    drive(run, case.steps, oracle.eq10_corrected(case.w0, case.steps, exact=True), case.dtype,
          before_step=_set_hyper(run, per_param=False))


@given(data=st.data())
def test_constant_lr_eq9_equals_eq10(impl: object, data: st.DataObject) -> None:
    """With constant lr, eq. (9) and eq. (10) agree, and the implementation follows both."""
    case = data.draw(cases(constant_lr=True, cleared=_cleared_ok(impl)))
    nine = oracle.eq9(case.w0, case.steps, exact=True)
    ten = oracle.eq10_corrected(case.w0, case.steps, exact=True)
    for a, b in zip(nine, ten, strict=True):
        for n in a.w:
            assert np.all(a.w[n] == b.w[n])
    drive(_run(impl, case), case.steps, ten, case.dtype)


@given(data=st.data())
def test_momentum_zero_is_plain_sgd(impl: object, data: st.DataObject) -> None:
    """momentum = 0: w_{t+1} = w_t - lr_{t+1} g_t, whatever the schedule."""
    case = data.draw(cases(momentum=0.0, cleared=_cleared_ok(impl)))
    run = _run(impl, case)
    w = {n: a.astype(np.float64) for n, a in case.w0.items()}
    sgd = []
    for step in case.steps:
        w = {n: w[n] - (0.0 if step.grads[n] is None else step.lr[n] * step.grads[n].astype(np.float64))
             for n in w}
        sgd.append(oracle.OracleState(dict(w), {n: np.zeros_like(a) for n, a in w.items()}))
    drive(run, case.steps, sgd, case.dtype, before_step=_set_hyper(run, per_param=False))


def test_zero_initial_state(impl: object) -> None:
    """The state starts at zeros: after one step with gradient g it holds -g (Chainer's sign)."""
    require(impl, "state", "chainer_sign", "zero_initial_state")
    run = impl.make({"W": np.array([1.0, -2.0])}, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    before = run.velocity("W")
    assert before is None or np.all(before == 0)
    run.step({"W": np.array([3.0, 5.0])})
    np.testing.assert_array_equal(run.velocity("W"), [-3.0, -5.0])
    np.testing.assert_array_equal(run.params()["W"], [1.0 - 1.5, -2.0 - 2.5])


def test_cleared_gradient_still_moves(impl: object) -> None:
    """A parameter whose gradient was cleared moves by its momentum: w -= lr * m * u."""
    require(impl, "cleared_grad_moves")
    run = impl.make({"W": np.array([0.0]), "b": np.array([0.0])}, lr=0.5, momentum=0.5)  # type: ignore[attr-defined]
    run.step({"W": np.array([2.0]), "b": np.array([4.0])})
    run.step({"b": np.array([4.0])})
    # eq. (9): u1 = 2, w1 = -1; u2 = 0.5 * 2 + 0 = 1, w2 = -1 - 0.5 * 1 = -1.5
    np.testing.assert_array_equal(run.params()["W"], [-1.5])
    np.testing.assert_array_equal(run.params()["b"], [-2.0 - 0.5 * 6.0])


@given(data=st.data())
def test_per_parameter_overrides(impl: object, data: st.DataObject) -> None:
    """lr and momentum set for one parameter apply to it only, others follow the optimizer's."""
    require(impl, "per_param_hyperparams")
    case = data.draw(cases(overrides=True, cleared=_cleared_ok(impl), changing_momentum=True))
    run = _run(impl, case)
    drive(run, case.steps, oracle.eq9(case.w0, case.steps, exact=True), case.dtype,
          before_step=_set_hyper(run, per_param=True))


@given(data=st.data())
def test_state_sign_convention(impl: object, data: st.DataObject) -> None:
    """The exposed state is v = -u of eq. (9) after every step (Chainer's sign)."""
    require(impl, "state", "chainer_sign")
    case = data.draw(cases(cleared=_cleared_ok(impl)))
    run = _run(impl, case)
    drive(run, case.steps, oracle.eq9(case.w0, case.steps, exact=True), case.dtype, check_state=True,
          before_step=_set_hyper(run, per_param=False))


@given(n=st.integers(10, 30), size=st.integers(20, 200), m=momenta, seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_float64_long_trajectory(impl: object, n: int, size: int, m: float, seed: int,
                                 data: st.DataObject) -> None:
    """Longer float64 runs on larger arrays follow eq. (9) (float64 oracle)."""
    require(impl, "eq9")
    rng = np.random.default_rng(seed)
    lrs = data.draw(lr_schedules(n))
    w0 = {"W": rng.standard_normal(size)}
    steps = [oracle.Step({"W": rng.standard_normal(size)}, {"W": lr}, {"W": m}) for lr in lrs]
    run = impl.make(w0, lr=lrs[0], momentum=m)  # type: ignore[attr-defined]
    drive(run, steps, oracle.eq9(w0, steps), np.dtype(np.float64), before_step=_set_hyper(run, False))


@given(data=st.data())
def test_float16_with_fp32_master(impl: object, data: st.DataObject) -> None:
    """float16 parameters with fp32 update: each step is one float16 rounding of the float32 trajectory."""
    require(impl, "float16_master")
    case = data.draw(cases(dtypes=("float16",), cleared=_cleared_ok(impl)))
    run = _run(impl, case, fp32_update=True)
    trajectory = oracle.eq9(case.w0, case.steps)
    from conformance.compare import magnitude

    scale = magnitude(trajectory, case.steps)
    drive(run, case.steps, trajectory, case.dtype, before_step=_set_hyper(run, per_param=False),
          atol=lambda want, k: float16_master_atol(want, k, scale))
