"""Trajectories of both optimizers against the exact model in :mod:`oracle`.

Inputs are floats of the tested dtype; the oracle runs on their exact
rational values. With dyadic inputs of few bits every floating-point
operation is exact, so those tests demand equality; hypothesis-drawn inputs
are compared within the forward error bound the oracle carries.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from backends import Backend
from hypothesis import given
from hypothesis import strategies as st

import corrmom_ref as cr
from corrmom_conformance.oracle import UNIT_ROUNDOFF, closed_form_constant, exact, momentum_trajectory

OPTIMIZERS = {"corrected": cr.CorrectedMomentumSGD, "uncorrected": cr.MomentumSGD}
#: Smallest positive normal number per dtype: an absolute slack per operation
#: for underflow (XLA on the CPU flushes subnormal results to zero).
TINY = {"float16": 2.0**-14, "float32": 2.0**-126, "float64": 2.0**-1022}


def need_dtype(bk: Backend, dtype: str) -> None:
    if dtype == "float16" and not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")


def assert_representable(values: np.ndarray, dtype: str) -> None:
    """The premise of an exact test: every exact value is a float of ``dtype``."""
    np.testing.assert_array_equal(values.astype(dtype).astype(np.float64), values)


def run(
    bk: Backend,
    kind: str,
    p0: np.ndarray,
    grads: list[np.ndarray | None],
    lrs: list[float],
    momentum: float,
    dtype: str,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run one optimizer over the steps; parameter and state after each step (as float64)."""
    w = cr.Parameter(bk.asarray(p0, dtype))
    opt = OPTIMIZERS[kind](lr=lrs[0], momentum=momentum).setup(cr.Link(w=w))
    params, states = [bk.to_numpy(w.array).astype(np.float64)], [np.zeros(p0.size)]
    for g, lr in zip(grads, lrs, strict=True):
        opt.lr = lr
        w.grad = None if g is None else bk.asarray(g, dtype)
        opt.update()
        assert w.array.dtype == bk.dtype(dtype), "the update changed the parameter's dtype"
        params.append(bk.to_numpy(w.array).astype(np.float64).ravel())
        states.append(bk.to_numpy(w.update_rule.state["v"]).astype(np.float64).ravel())
    return params, states


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_constant_gradient_matches_closed_form(bk: Backend, dtype: str) -> None:
    """Eq. (9) with constant g and lr has a closed form; dyadic inputs make it exact."""
    need_dtype(bk, dtype)
    p0, g, lr, m, steps = Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 2), 6
    params, states = run(
        bk, "corrected", np.array([1.0, 1.0]), [np.array([0.5, 0.5])] * steps, [0.25] * steps, 0.5, dtype
    )
    for t in range(steps + 1):
        p_t, v_t = closed_form_constant(p0, g, lr, m, t)
        np.testing.assert_array_equal(params[t], [float(p_t)] * 2, err_msg=f"w after step {t}")
        np.testing.assert_array_equal(states[t], [float(v_t)] * 2, err_msg=f"v after step {t}")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param([0.5, 0.5, 0.25, 0.25, 0.25, 0.125], id="step-decay"),
        pytest.param([0.125, 0.25, 0.375, 0.5, 0.5, 0.5], id="linear-warmup"),
    ],
)
def test_changing_lr_exact(bk: Backend, dtype: str, schedule: list[float]) -> None:
    """Under a changing lr, corrected follows eq. (9) and MomentumSGD eq. (10), exactly.

    The two equations give different trajectories here (checked on the
    oracle), so the test distinguishes them.
    """
    need_dtype(bk, dtype)
    if dtype == "float16":
        schedule = schedule[:4]  # beyond that the exact values need more than 11 bits
    p0 = np.array([1.0, -2.0, 0.5])
    grads = [np.array([1.0, 0.5, -1.0]) * (1 + k % 2) for k in range(len(schedule))]
    lrs = [Fraction(x) for x in schedule]
    ms = [Fraction(1, 2)] * len(schedule)
    eq9 = momentum_trajectory(exact(p0), [exact(g) for g in grads], lrs, ms, corrected=True)
    eq10 = momentum_trajectory(exact(p0), [exact(g) for g in grads], lrs, ms, corrected=False)
    assert eq9.params[-1] != eq10.params[-1], "the schedule must make (9) and (10) differ"
    for model in (eq9, eq10):
        for t in range(len(schedule) + 1):
            for values in (model.param_array(t), model.state_array(t)):
                assert_representable(values, dtype)
    for kind, model in (("corrected", eq9), ("uncorrected", eq10)):
        params, states = run(bk, kind, p0, grads, schedule, 0.5, dtype)
        for t in range(len(schedule) + 1):
            np.testing.assert_array_equal(params[t], model.param_array(t), err_msg=f"{kind} w, step {t}")
            np.testing.assert_array_equal(states[t], model.state_array(t), err_msg=f"{kind} v, step {t}")


def test_momentum_zero_is_plain_sgd_and_cleared_grads_still_move(bk: Backend) -> None:
    """m = 0 is SGD (w -= lr g); with m > 0 a cleared gradient still moves w by lr m v."""
    p0 = np.array([1.0, 2.0])
    params, _ = run(bk, "corrected", p0, [np.array([1.0, -1.0]), None], [0.5, 0.5], 0.0, "float32")
    np.testing.assert_array_equal(params[1], [0.5, 2.5])
    np.testing.assert_array_equal(params[2], [0.5, 2.5])  # v = 0*v - 0
    params, states = run(bk, "corrected", p0, [np.array([1.0, -1.0]), None, None], [0.5] * 3, 0.5, "float32")
    # v: -g, -g/2, -g/4; w: w0 - lr g (1 + 1/2 + 1/4)
    np.testing.assert_array_equal(states[3], [-0.25, 0.25])
    np.testing.assert_array_equal(params[3], [1.0 - 0.5 * 1.75, 2.0 + 0.5 * 1.75])


finite_floats = st.floats(-4, 4, allow_nan=False, width=16)


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    dtype = draw(st.sampled_from(["float16", "float32", "float64"]))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    steps = draw(st.integers(1, 6))
    base_lr = draw(st.floats(0, 1, allow_nan=False))
    schedule_kind = draw(st.sampled_from(["constant", "warmup", "step-decay", "arbitrary"]))
    if schedule_kind == "constant":
        lrs = [base_lr] * steps
    elif schedule_kind == "warmup":
        lrs = [base_lr * (k + 1) / steps for k in range(steps)]
    elif schedule_kind == "step-decay":
        at = draw(st.integers(0, steps))
        lrs = [base_lr * (0.1 if k >= at else 1.0) for k in range(steps)]
    else:
        lrs = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=steps, max_size=steps))
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99]) | st.floats(0, 0.999))
    size = int(np.prod(shape))
    p0 = np.array(draw(st.lists(finite_floats, min_size=size, max_size=size))).reshape(shape)
    grads = []
    for _ in range(steps):
        cleared = draw(st.integers(0, 4)) == 0
        g = np.array(draw(st.lists(finite_floats, min_size=size, max_size=size))).reshape(shape)
        grads.append(None if cleared else g)
    return {"dtype": dtype, "p0": p0, "grads": grads, "lrs": lrs, "momentum": momentum}


@pytest.mark.parametrize("kind", ["corrected", "uncorrected"])
@given(case=scenarios())
def test_trajectory_within_error_bound(bk: Backend, kind: str, case: dict) -> None:
    """Random shapes, dtypes, hyperparameters, lr schedules and cleared gradients."""
    dtype = case["dtype"]
    need_dtype(bk, dtype)
    # inputs as the backend will hold them
    p0 = case["p0"].astype(dtype)
    grads = [None if g is None else g.astype(dtype) for g in case["grads"]]
    lrs = [float(x) for x in case["lrs"]]
    model = momentum_trajectory(
        exact(p0),
        [None if g is None else exact(g) for g in grads],
        [Fraction(x) for x in lrs],
        [Fraction(case["momentum"])] * len(lrs),
        corrected=kind == "corrected",
    )
    params, states = run(bk, kind, p0, grads, lrs, case["momentum"], dtype)
    eps, tiny = UNIT_ROUNDOFF[dtype], TINY[dtype]
    for t in range(1, len(lrs) + 1):
        slack = 8 * t * tiny
        np.testing.assert_array_less(
            np.abs(params[t] - model.param_array(t)),
            model.param_tolerance(t, eps) + slack,
            err_msg=f"w after step {t}",
        )
        np.testing.assert_array_less(
            np.abs(states[t] - model.state_array(t)),
            model.state_tolerance(t, eps) + slack,
            err_msg=f"v after step {t}",
        )


def test_corrected_equals_uncorrected_with_manual_correction(bk: Backend) -> None:
    """Eq. (10) with v multiplied by lr_new/lr_old at each change reproduces eq. (9).

    The paper's derivation, checked on the two optimizers against each other:
    MomentumSGD's ``v`` equals ``lr`` times CorrectedMomentumSGD's ``v``.
    """
    schedule = [0.5, 0.5, 0.125, 0.125, 0.25]
    a = cr.Parameter(bk.asarray([1.0, -1.0], "float64"))
    b = cr.Parameter(bk.asarray([1.0, -1.0], "float64"))
    corrected = cr.CorrectedMomentumSGD(lr=schedule[0], momentum=0.75).setup(cr.Link(w=a))
    plain = cr.MomentumSGD(lr=schedule[0], momentum=0.75).setup(cr.Link(w=b))
    previous = schedule[0]
    for k, lr in enumerate(schedule):
        corrected.lr = plain.lr = lr
        if k and lr != previous:
            rule = b.update_rule
            rule.state["v"] = rule.state["v"] * (lr / previous)
        previous = lr
        a.grad = bk.asarray([0.25 * (k + 1), -0.5], "float64")
        b.grad = bk.asarray([0.25 * (k + 1), -0.5], "float64")
        corrected.update()
        plain.update()
        np.testing.assert_allclose(bk.to_numpy(a.array), bk.to_numpy(b.array), rtol=1e-14)
        np.testing.assert_allclose(
            lr * bk.to_numpy(a.update_rule.state["v"]), bk.to_numpy(b.update_rule.state["v"]), rtol=1e-14
        )


def test_per_parameter_override(bk: Backend) -> None:
    """An override on one rule sticks; the others follow the optimizer's lr."""
    u = cr.Parameter(bk.asarray([1.0], "float32"))
    w = cr.Parameter(bk.asarray([1.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(cr.Link(u=u, l1=cr.Link(w=w)))
    w.update_rule.hyperparam.lr = 0.25
    w.update_rule.hyperparam.momentum = 0.0
    for lr in (0.5, 0.125):
        opt.lr = lr
        u.grad = bk.asarray([1.0], "float32")
        w.grad = bk.asarray([1.0], "float32")
        opt.update()
    # u: v=-1, w=0.5; v=-1.5, w=0.5-0.1875   w: m=0, lr=0.25 both steps
    np.testing.assert_array_equal(bk.to_numpy(u.array), [0.5 - 0.125 * 1.5])
    np.testing.assert_array_equal(bk.to_numpy(w.array), [0.5])
    assert w.update_rule.hyperparam.lr == 0.25 and u.update_rule.hyperparam.lr == 0.125
    assert repr(w.update_rule.hyperparam) == "Hyperparameter(lr=0.25, momentum=0.0)"
    assert repr(u.update_rule.hyperparam) == "Hyperparameter(lr=0.125, momentum=0.5)"


def test_disabled_rule_does_nothing(bk: Backend) -> None:
    u = cr.Parameter(bk.asarray([1.0], "float32"))
    w = cr.Parameter(bk.asarray([1.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(cr.Link(u=u, w=w))
    w.update_rule.enabled = False
    u.grad = bk.asarray([1.0], "float32")
    w.grad = bk.asarray([1.0], "float32")
    opt.update()
    assert (opt.t, u.update_rule.t, w.update_rule.t) == (1, 1, 0)
    np.testing.assert_array_equal(bk.to_numpy(w.array), [1.0])
    assert w.update_rule.state is None
    np.testing.assert_array_equal(bk.to_numpy(u.array), [0.5])


@pytest.mark.parametrize("kind", ["corrected", "uncorrected"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_zero_dim_parameter_keeps_its_type_and_dtype(bk: Backend, kind: str, dtype: str) -> None:
    """A 0-d parameter stays a 0-d array of its dtype, also through loss scaling.

    (NumPy 1.x casts 0-d arrays by value: on read-only arrays the update
    returned float64 scalars.) lr = 1/2, m = 1/2, g = 1, scale 4: exact.
    """
    need_dtype(bk, dtype)
    w = cr.Parameter(bk.asarray(1.0, dtype))
    opt = OPTIMIZERS[kind](lr=0.5, momentum=0.5).setup(cr.Link(w=w))
    opt.set_loss_scale(4.0)
    for _ in range(2):
        opt.update(lambda: cr.ScriptedLoss({w: bk.asarray(1.0, dtype)}))
        for x in (w.array, w.update_rule.state["v"]):
            assert type(x) is type(bk.asarray(0.0, dtype)) and x.dtype == bk.dtype(dtype)
            assert tuple(x.shape) == ()
    # v: -1, -1.5; w: 1 - 0.5 - 0.75 (corrected) or 1 - 0.5 - 0.75 (eq. 10 with lr inside v)
    assert float(bk.to_numpy(w.array)) == 1.0 - 0.5 - 0.75
