"""Family 9: bitwise agreement with Chainer's rounding, for implementations that declare it.

An implementation with the ``chainer_rounding`` capability (or an
``exact_variant``, a documented mode that has it: then that mode is checked)
promises Chainer's numbers, not merely eq. (9) within a tolerance: each step must equal, bit for
bit, :func:`corrmom_conformance.oracle.chainer_cpu_step` (``v *= m; v -= g;
p += lr * v`` in the parameter's dtype), with gradients unscaled by
``g /= s`` in that dtype, and float16 parameters with a float32 master copy
rounded back after each step (a loss-scaled float16 gradient is cast to
float32 first and unscaled there). A re-associated or fused formula that passes
the equation family within tolerance fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrmom_conformance import oracle
from corrmom_conformance.checks._support import gradients, problem, quiet
from corrmom_conformance.report import NA_PREFIX
from corrmom_conformance.strategies import schedules
from corrmom_conformance.tolerances import bitwise_equal, first_bit_difference

pytestmark = pytest.mark.requires("hyperparams")


@pytest.fixture(scope="module")
def exact(adapter):
    """The implementation in the mode that promises Chainer's rounding: itself (``chainer_rounding``),
    else its documented exact mode (``exact_variant``); not applicable without either."""
    if "chainer_rounding" in adapter.capabilities:
        return adapter
    if "exact_variant" not in adapter.capabilities:
        pytest.skip(f"{NA_PREFIX}lacks capability chainer_rounding (and has no exact_variant)")
    variant = adapter.exact_variant()
    assert "chainer_rounding" in variant.capabilities, (
        f"{adapter.name}'s exact_variant() ({variant.name}) does not declare chainer_rounding"
    )
    return variant


SHAPES = {"W": (3, 2), "b": (5,)}


def _bitwise(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Bit patterns, not values: ``-0.0`` where Chainer has ``+0.0`` fails (:func:`bitwise_equal`)."""
    if not bitwise_equal(got, want):
        i = first_bit_difference(got, want) or 0
        raise AssertionError(
            f"{what}: not bitwise Chainer's rounding: got {got.dtype} {got.reshape(-1)[i]!r}, "
            f"Chainer's order gives {want.dtype} {want.reshape(-1)[i]!r} at flat index {i}"
        )


def _check(adapter, params, grads, lrs, momenta, *, loss_scale=None, master=False):
    opt = adapter.create(params, lr=lrs[0], momentum=momenta[0])
    if loss_scale is not None:
        opt.loss_scaling(scale=loss_scale)
    if master:
        opt.use_fp32_update()
    work = {k: v.astype(np.float32) if master else v.copy() for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in work.items()}
    with quiet():
        for t, (g, lr, m) in enumerate(zip(grads, lrs, momenta, strict=True), start=1):
            opt.set_lr(lr)
            opt.set_momentum(m)
            opt.step(g)
            got = opt.params()
            state = opt.state() if "state" in adapter.capabilities else {}
            for k in work:
                grad = g[k]
                if loss_scale is not None:  # backward gives s * g in the gradient's dtype
                    grad = np.multiply(grad, grad.dtype.type(loss_scale), dtype=grad.dtype)
                if master:  # the master's gradient is the float16 one cast, unscaled after the cast
                    grad = grad.astype(np.float32)
                if loss_scale is not None:  # the rule divides, in the dtype it updates in
                    grad = np.divide(grad, grad.dtype.type(loss_scale), dtype=grad.dtype)
                work[k], v[k] = oracle.chainer_cpu_step(work[k], grad, v[k], lr, m)
                want = work[k].astype(params[k].dtype)
                _bitwise(got[k], want, f"parameter {k!r} at step {t}")
                if state.get(k) is not None and adapter.state_sign == -1.0:
                    _bitwise(state[k], v[k], f"state {k!r} at step {t}")


def _momenta(draw, steps):
    return draw(st.lists(st.sampled_from([0.0, 0.5, 0.9, 0.99]), min_size=steps, max_size=steps))


@given(seed=st.integers(0, 2**16), steps=st.integers(2, 8), data=st.data())
def test_bitwise_float32(exact, seed, steps, data):
    """float32, any schedule and momentum changes: every step bitwise as Chainer rounds it."""
    params = problem(seed, SHAPES)
    _check(
        exact,
        params,
        gradients(seed, params, steps),
        data.draw(schedules(steps)),
        _momenta(data.draw, steps),
    )


@pytest.mark.requires("float64")
@given(seed=st.integers(0, 2**16), data=st.data())
def test_bitwise_float64(exact, seed, data):
    params = problem(seed, SHAPES, np.float64)
    _check(exact, params, gradients(seed, params, 6), data.draw(schedules(6)), _momenta(data.draw, 6))


@pytest.mark.requires("loss_scaling")
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([3.0, 10.0, 1000.0]))
def test_bitwise_under_static_loss_scale(exact, seed, scale):
    """A scale that is not a power of two rounds the gradient twice (s g, then / s): Chainer's numbers include that."""
    params = problem(seed, SHAPES)
    _check(
        exact, params, gradients(seed, params, 5), [0.1, 0.2, 0.2, 0.05, 0.05], [0.9] * 5, loss_scale=scale
    )


@pytest.mark.requires("float16", "fp32_master")
@given(seed=st.integers(0, 2**16))
def test_bitwise_float16_master(exact, seed):
    """float16 with fp32 update: Chainer's steps on the float32 master, rounded to float16 after each."""
    params = problem(seed, SHAPES, np.float16)
    _check(exact, params, gradients(seed, params, 5), [0.1, 0.2, 0.2, 0.05, 0.05], [0.9] * 5, master=True)


@pytest.mark.requires("float16", "fp32_master", "loss_scaling")
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([3.0, 10.0, 1000.0]))
def test_bitwise_float16_master_under_static_loss_scale(exact, seed, scale):
    """float16 with fp32 update under a static scale that is not a power of two: the float16 gradient
    ``s g`` is cast to float32 and divided by ``s`` there (dividing in float16 rounds once more)."""
    params = problem(seed, SHAPES, np.float16)
    grads = gradients(seed, params, 5)
    lrs = [0.1, 0.2, 0.2, 0.05, 0.05]
    _check(exact, params, grads, lrs, [0.9] * 5, loss_scale=scale, master=True)


#: Signed zeros in parameters and gradients: Chainer's order makes ``+0.0`` where a
#: differently ordered formula may make ``-0.0`` (and the reverse); only bits tell them apart.
_ZEROS_W = np.array([[-0.0, 0.0], [1.5, -0.0], [0.0, -2.0]])
_ZEROS_G = [
    np.array([[0.0, -0.0], [0.0, 0.5], [-0.0, 0.0]]),
    np.array([[-0.0, 0.0], [-0.25, 0.0], [0.0, -0.0]]),
    np.array([[0.0, 0.0], [-0.0, -0.0], [0.75, 0.0]]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momenta", [[0.9, 0.9, 0.9], [0.0, 0.5, 0.0]], ids=["m0.9", "m-zero"])
def test_bitwise_signed_zeros(exact, dtype, momenta):
    """Zero parameters and gradients of both signs, from the first step on: the bits of every zero are Chainer's."""
    if dtype == "float64" and "float64" not in exact.capabilities:
        pytest.skip("not applicable: lacks capability float64")
    kind = np.dtype(dtype)
    params = {"W": _ZEROS_W.astype(kind), "b": np.array([-0.0, 0.0, 0.25], kind)}
    grads = [{"W": g.astype(kind), "b": np.array([0.0, -0.0, -0.0], kind)} for g in _ZEROS_G]
    _check(exact, params, grads, [0.5, 0.25, 0.5], momenta)
