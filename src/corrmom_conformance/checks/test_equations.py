"""Family 1: equation-level invariants of eq. (9) and eq. (10).

Every trajectory is compared, step by step, with the suite's oracle
(:mod:`corrmom_conformance.oracle`); a failure names the first step and parameter
where the implementation departs from it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrmom_conformance import oracle
from corrmom_conformance.checks._support import assert_trajectory, gradients, oracle_eq9, problem, quiet, run
from corrmom_conformance.strategies import momenta, schedules, shapes, step_decay, warmup
from corrmom_conformance.tolerances import assert_close, bitwise_equal, trajectory_atol

SHAPES = {"W": (3, 2), "b": (2,)}


@pytest.mark.requires("hyperparams")
@given(
    bits=st.lists(st.integers(-8, 8), min_size=10, max_size=10),
    lr_exp=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    m=st.sampled_from([0.0, 0.5, 0.75]),
)
def test_exact_dyadic_trajectory(adapter, bits, lr_exp, m):
    """With dyadic inputs of few bits no rounding happens: the trajectory must equal eq. (9) exactly."""
    w0 = np.array(bits[:2], dtype=np.float32) / 8
    grads = [np.array(bits[2 + 2 * i : 4 + 2 * i], dtype=np.float32) / 4 for i in range(4)]
    got, want = _trajectory_and_exact_eq9(adapter, w0, grads, [2.0**-e for e in lr_exp], m)
    for t, (step, (w, _)) in enumerate(zip(got, want, strict=True), start=1):
        exact_w = np.array([float(x) for x in w.ravel()]).reshape(w.shape)
        assert np.array_equal(step["w"].astype(np.float64), exact_w), (
            f"step {t}: {step['w'].tolist()} != exact eq. (9) {[str(x) for x in w.ravel()]}"
        )


def _trajectory_and_exact_eq9(adapter, w0, grads, lrs, m):
    """The implementation's steps on ``w0`` with ``grads`` and learning rates ``lrs``, and eq. (9)'s
    trajectory from the same inputs in exact arithmetic."""
    opt = adapter.create({"w": w0}, lr=lrs[0], momentum=m)
    got = run(opt, [{"w": g} for g in grads], lrs)
    want = oracle.eq9(
        oracle.exact(w0),
        [oracle.exact(g) for g in grads],
        [Fraction(x) for x in lrs],
        [Fraction(m)] * len(grads),
    )
    return got, want


@pytest.mark.requires("hyperparams", "float64")
@given(
    numerators=st.lists(st.integers(-(2**20), 2**20), min_size=10, max_size=10),
    lr_exp=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    m=st.sampled_from([0.0, 0.5, 0.75]),
)
def test_exact_dyadic_trajectory_float64(adapter, numerators, lr_exp, m):
    """float64 from another angle than the tolerance: values of 21 significant bits, whose
    trajectory needs about 35 (more than float32's 24, fewer than float64's 53), so float64
    arithmetic is exact and the result must equal eq. (9) in exact arithmetic."""
    w0 = np.array(numerators[:2], dtype=np.float64) / 2**20
    grads = [np.array(numerators[2 + 2 * i : 4 + 2 * i], dtype=np.float64) / 2**20 for i in range(4)]
    got, want = _trajectory_and_exact_eq9(adapter, w0, grads, [2.0**-e for e in lr_exp], m)
    for t, (step, (w, _)) in enumerate(zip(got, want, strict=True), start=1):
        assert step["w"].dtype == np.float64, f"step {t}: the parameter came back as {step['w'].dtype}"
        exact_w = [Fraction(float(x)) for x in step["w"].ravel()]
        assert exact_w == list(w.ravel()), (
            f"step {t}: {step['w'].tolist()} != exact eq. (9) {[str(x) for x in w.ravel()]}"
        )


@pytest.mark.requires("hyperparams")
@given(seed=st.integers(0, 2**16), steps=st.integers(2, 12), m=momenta, data=st.data(), shape=shapes)
def test_trajectory_matches_eq9(adapter, seed, steps, m, data, shape):
    """Under any schedule (warm-up, step decay, ...) the parameters follow eq. (9)."""
    lrs = data.draw(schedules(steps))
    params = problem(seed, {"w": shape, "b": (2,)})
    grads = gradients(seed, params, steps)
    got = run(adapter.create(params, lr=lrs[0], momentum=m), grads, lrs)
    assert_trajectory(got, oracle_eq9(params, grads, lrs, [m] * steps), np.float32)


@pytest.mark.requires("hyperparams", "float64")
@given(seed=st.integers(0, 2**16), m=momenta)
def test_trajectory_matches_eq9_float64(adapter, seed, m):
    """The same in float64, where the tolerance is 2**29 times tighter."""
    steps = 10
    lrs = warmup(0.1, 5, 5) + step_decay(0.1, 5, 2)
    params = problem(seed, SHAPES, np.float64)
    grads = gradients(seed, params, steps)
    got = run(adapter.create(params, lr=lrs[0], momentum=m), grads, lrs)
    assert_trajectory(got, oracle_eq9(params, grads, lrs, [m] * steps), np.float64)


@pytest.mark.requires("hyperparams")
@given(seed=st.integers(0, 2**16), m=st.sampled_from([0.5, 0.9]))
def test_equals_corrected_eq10_under_changing_lr(adapter, seed, m):
    """Eq. (9) equals eq. (10) with the correction factor eta_{t+1}/eta_t, under warm-up then decay."""
    lrs = warmup(0.4, 5, 5) + step_decay(0.4, 6, 2)
    params = problem(seed, {"w": (4,)})
    grads = gradients(seed, params, len(lrs))
    got = run(adapter.create(params, lr=lrs[0], momentum=m), grads, lrs)
    corrected = oracle.eq10(
        params["w"].astype(float), [g["w"].astype(float) for g in grads], lrs, [m] * len(lrs), True
    )
    uncorrected = oracle.eq10(
        params["w"].astype(float), [g["w"].astype(float) for g in grads], lrs, [m] * len(lrs), False
    )
    assert_trajectory(got, [{"w": w} for w, _ in corrected], np.float32)
    # and it is not the uncorrected form: that one departs by far more than the tolerance
    gap = max(float(np.max(np.abs(a["w"] - w))) for a, (w, _) in zip(got, uncorrected, strict=True))
    assert gap > 100 * trajectory_atol(np.float32, len(lrs), 10.0), (
        "indistinguishable from uncorrected eq. (10)"
    )


@pytest.mark.requires("hyperparams")
@given(seed=st.integers(0, 2**16), m=momenta)
def test_constant_lr_equals_uncorrected_eq10(adapter, seed, m):
    """With a constant learning rate eq. (9) and uncorrected eq. (10) coincide."""
    steps, lr = 8, 0.1
    params = problem(seed, {"w": (5,)})
    grads = gradients(seed, params, steps)
    got = run(adapter.create(params, lr=lr, momentum=m), grads)
    plain = oracle.eq10(
        params["w"].astype(float), [g["w"].astype(float) for g in grads], [lr] * steps, [m] * steps, False
    )
    assert_trajectory(got, [{"w": w} for w, _ in plain], np.float32)


@given(seed=st.integers(0, 2**16), data=st.data())
@pytest.mark.requires("hyperparams")
def test_momentum_zero_is_plain_sgd(adapter, seed, data):
    """With m = 0 each step is w <- w - eta g."""
    steps = 6
    lrs = data.draw(schedules(steps))
    params = problem(seed, SHAPES)
    grads = gradients(seed, params, steps)
    got = run(adapter.create(params, lr=lrs[0], momentum=0.0), grads, lrs)
    expected, w = [], {k: v.astype(float) for k, v in params.items()}
    for g, lr in zip(grads, lrs, strict=True):
        w = {k: w[k] - lr * g[k].astype(float) for k in w}
        expected.append(w)
    assert_trajectory(got, expected, np.float32)


def test_zero_initial_state(adapter):
    """The buffer starts at zero: the first step is w - eta g, and the second is w - eta (m g0 + g1)."""
    params = problem(1, {"w": (3,)})
    grads = gradients(1, params, 2)
    opt = adapter.create(params, lr=0.5, momentum=0.9)
    got = run(opt, grads)
    g0, g1, w0 = (x.astype(float) for x in (grads[0]["w"], grads[1]["w"], params["w"]))
    assert_trajectory(got, [{"w": w0 - 0.5 * g0}, {"w": w0 - 0.5 * g0 - 0.5 * (0.9 * g0 + g1)}], np.float32)


@pytest.mark.requires("state")
def test_state_sign_convention(adapter):
    """The exposed buffer is state_sign * u of eq. (9) after every step (Chainer: v = -u)."""
    params = problem(2, SHAPES)
    grads = gradients(2, params, 4)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    u = {k: np.zeros(v.shape) for k, v in params.items()}
    with quiet():
        for t, g in enumerate(grads, start=1):
            opt.step(g)
            u = {k: 0.9 * u[k] + g[k].astype(float) for k in u}
            state = opt.state()
            for k in u:
                assert state[k] is not None, f"no state for {k!r} after step {t}"
                assert_close(
                    state[k],
                    adapter.state_sign * u[k],
                    trajectory_atol(np.float32, t, 10.0),
                    f"state {k!r} at step {t}",
                )


@pytest.mark.requires("cleared_grads")
def test_cleared_gradient_still_moves(adapter):
    """A parameter whose gradient was cleared is updated with a zero gradient: it moves by m * eta * u."""
    params = problem(3, {"w": (3,), "z": (2,)})
    grads = gradients(3, params, 1)
    opt = adapter.create(params, lr=0.5, momentum=0.9)
    got = run(opt, [grads[0], {"w": grads[0]["w"], "z": None}])
    g = grads[0]["z"].astype(float)
    z0 = params["z"].astype(float)
    expected_z = [z0 - 0.5 * g, z0 - 0.5 * g - 0.5 * 0.9 * g]
    assert_trajectory([{"z": s["z"]} for s in got], [{"z": z} for z in expected_z], np.float32)


@pytest.mark.requires("per_param_hyperparams")
@given(seed=st.integers(0, 2**16), lr=st.sampled_from([0.5, 0.05]), m=st.sampled_from([0.0, 0.5]))
def test_per_parameter_override(adapter, seed, lr, m):
    """An override of lr or momentum for one parameter applies to it alone; changing the optimizer's lr later does not undo it."""
    params = problem(seed, SHAPES)
    grads = gradients(seed, params, 5)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.set_param_hyperparam("b", "lr", lr)
    opt.set_param_hyperparam("b", "momentum", m)
    lrs = [0.1, 0.1, 0.2, 0.2, 0.05]
    got = run(opt, grads, lrs)
    want_w = oracle_eq9({"W": params["W"]}, grads, lrs, [0.9] * 5)
    want_b = oracle_eq9({"b": params["b"]}, grads, [lr] * 5, [m] * 5)
    assert_trajectory(got, [{**a, **b} for a, b in zip(want_w, want_b, strict=True)], np.float32)


@pytest.mark.requires("fp32_master", "float16")
def test_float16_with_fp32_master(adapter):
    """float16 parameters with fp32 update follow eq. (9) computed in float32 and rounded to float16 after each step.

    Each step here is below half a float16 ulp of the parameter: without a
    master copy the parameter would never move.
    """
    w0 = np.full(4, 1.0, np.float16)
    g = np.full(4, 1.0, np.float16)
    lr, m, steps = 2.0**-14, 0.5, 40
    opt = adapter.create({"w": w0}, lr=lr, momentum=m)
    opt.use_fp32_update()
    got = run(opt, [{"w": g}] * steps)
    master, u = np.float32(1.0), np.float32(0.0)
    for t, step in enumerate(got, start=1):
        u = np.float32(m) * u + np.float32(1.0)
        master = np.float32(master - np.float32(lr) * u)
        expected = np.full(4, master).astype(np.float16)
        assert bitwise_equal(step["w"], expected), (
            f"step {t}: {step['w']} != float16(float32 master) {expected}"
        )
    assert got[-1]["w"][0] != np.float16(1.0), "the parameter never moved"


@pytest.mark.requires("hyperparams")
@given(
    seed=st.integers(0, 2**16),
    momenta_drawn=st.lists(st.sampled_from([0.5, 0.9, 0.99]), min_size=8, max_size=8),
    data=st.data(),
)
def test_momentum_changes_follow_eq9(adapter, seed, momenta_drawn, data):
    """``set_momentum`` between steps: each step uses the momentum set before it, in eq. (9)'s ``u = m u + g``."""
    momenta_used = [0.9, 0.5, *momenta_drawn[2:]]  # at least one change, whatever is drawn
    _assert_momenta(adapter, seed, momenta_used, data.draw(schedules(len(momenta_used))))


@pytest.mark.requires("hyperparams")
def test_momentum_back_from_zero_keeps_the_buffer(adapter):
    """Steps with momentum 0 still keep u = g: when the momentum returns (step 4), it carries step 3's gradient."""
    _assert_momenta(adapter, 7, [0.9, 0.0, 0.0, 0.5, 0.9], [0.1] * 5)


def _assert_momenta(adapter, seed, momenta_used, lrs):
    params = problem(seed, SHAPES)
    grads = gradients(seed, params, len(momenta_used))
    opt = adapter.create(params, lr=lrs[0], momentum=momenta_used[0])
    got = []
    with quiet():
        for g, lr, m in zip(grads, lrs, momenta_used, strict=True):
            opt.set_lr(lr)
            opt.set_momentum(m)
            opt.step(g)
            got.append(opt.params())
    assert_trajectory(got, oracle_eq9(params, grads, lrs, momenta_used), np.float32)
