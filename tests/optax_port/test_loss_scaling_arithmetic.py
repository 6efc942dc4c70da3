"""corrmom_ref.optax.loss_scaling: how the jitted step unscales and checks gradients.

The quotient ``g / s`` of a power-of-two scale is computed as a product with ``1 / s``,
every other quotient by division; the verdict sums small leaves in stacks. Each must give
the numbers and the warnings of the plain per-leaf division and check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import corrmom_ref.optax as co  # noqa: E402
from corrmom_ref.loss_scaling import NonFiniteGradientWarning  # noqa: E402

jax.config.update("jax_enable_x64", True)

#: Float32 values a gradient may hold: subnormal, huge, -0, infinite, NaN.
EDGES = [0.0, -0.0, 1e-45, -1e-45, 1e-40, 1.17e-38, -1.18e-38, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan]

gradients = hnp.arrays(
    np.float32,
    st.integers(1, 40),
    elements=st.one_of(st.sampled_from(EDGES), st.floats(width=32, allow_subnormal=True)),
)


def unscaled(g: jax.Array, scale: float) -> np.ndarray:
    """``loss_scaling``'s static unscale of ``g``, jitted: the identity inner transformation
    returns the quotient itself."""
    tx = co.loss_scaling(optax.identity(), scale=scale)
    update = jax.jit(tx.update)
    return np.asarray(update([g], tx.init([g]))[0][0])


def xla_quotient(g: jax.Array, scale: float) -> np.ndarray:
    """XLA's element-wise division of ``g`` by the scale rounded to ``g``'s dtype: the divisor
    an array argument, which XLA cannot turn into a multiplication by a reciprocal."""
    with np.errstate(over="ignore"):  # a float16 divisor may overflow to inf, as in the wrapper
        d = jnp.full(g.shape, scale, g.dtype)
    return np.asarray(jax.jit(jnp.divide)(g, d))


def assert_bitwise(got: np.ndarray, want: np.ndarray) -> None:
    """Equal bit for bit, any NaN matching any NaN (a NaN's payload is not a number)."""
    assert got.dtype == want.dtype
    nan = np.isnan(want.astype(np.float32))
    assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
    assert got[~nan].tobytes() == want[~nan].tobytes(), (got, want)


@settings(max_examples=60, deadline=None)
@given(g=gradients, k=st.integers(-126, 126), dtype=st.sampled_from([jnp.float32, jnp.float16, jnp.bfloat16]))
def test_a_power_of_two_scale_gives_xlas_quotient_bitwise(g, k, dtype) -> None:
    """For s = 2**k, g * (1 / s) and g / s are one real number rounded once: the product the
    wrapper takes where 1 / s is a normal number of g's dtype (elsewhere it divides) equals
    XLA's quotient bit for bit, subnormal, flushed, infinite and -0 results included."""
    x = jnp.asarray(g).astype(dtype)
    assert_bitwise(unscaled(x, 2.0**k), xla_quotient(x, 2.0**k))


@settings(max_examples=60, deadline=None)
@given(
    g=gradients, scale=st.sampled_from([3.0, 65504.0, 1.5, 2.0 ** (1 / 1000), 2.0**100 * 3, 2.0**-100 / 3])
)
def test_any_other_scale_gives_xlas_quotient_bitwise(g, scale) -> None:
    assert_bitwise(unscaled(jnp.asarray(g), scale), xla_quotient(jnp.asarray(g), scale))


@pytest.mark.parametrize("scale", [3.0, 65504.0, 2.0 ** (1 / 1000)])
def test_a_scale_that_is_not_a_power_of_two_divides(scale) -> None:
    """g * (1 / s) is not g / s for these s (NumPy's float32 quotient, correctly rounded):
    65504 is dynamic scaling's cap, 2**(1/1000) its growth after an overflow."""
    s = np.float32(scale)
    g = np.random.default_rng(0).uniform(1, 2, 1 << 16).astype(np.float32)
    product, quotient = g * (np.float32(1) / s), g / s
    differs = product != quotient
    assert differs.sum() > 10
    np.testing.assert_array_equal(unscaled(jnp.asarray(g[differs]), scale), quotient[differs])


#: Leaves in an order that mixes the verdict's groups: stacks of 3 and of 5 elements, a
#: leaf alone of its size, one too large to be stacked.
MIXED = {
    "a": (3,),
    "b": (5,),
    "c": (3,),
    "d": (129, 128),
    "e": (3,),
    "f": (7,),
    "g": (5,),
    "h": (1, 3),
}


def mixed_step(bad: str | None, value: float) -> tuple[list, dict, object]:
    """A jitted dynamic step on MIXED with ``value`` in the middle of leaf ``bad``."""
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1, 0.9))
    p = {k: jnp.zeros(s, jnp.float32) for k, s in MIXED.items()}
    g = {k: np.ones(s, np.float32) for k, s in MIXED.items()}
    if bad is not None:
        flat = g[bad].reshape(-1)
        flat[: flat.size // 2 + 1] = value
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        updates, state = jax.jit(tx.update)({k: jnp.asarray(v) for k, v in g.items()}, tx.init(p), p)
        jax.block_until_ready(updates)
    named = [w.message.path for w in caught if isinstance(w.message, NonFiniteGradientWarning)]
    return named, updates, state


@pytest.mark.parametrize("bad", list(MIXED))
@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_a_non_finite_leaf_among_stacked_leaves_is_skipped_and_named(bad, value) -> None:
    named, updates, state = mixed_step(bad, value)
    assert named == [f"/{bad}"]
    assert all(np.array_equal(np.asarray(u), np.zeros_like(u)) for u in jax.tree.leaves(updates))
    assert bool(state.nonfinite_ever) and int(state.inner_state.count) == 0


@pytest.mark.parametrize("bad", ["a", "d", "h"])
def test_finite_stacked_leaves_whose_sums_overflow_are_a_kept_step(bad) -> None:
    named, updates, state = mixed_step(bad, 3e38)
    assert named == [] and not bool(state.nonfinite_ever) and int(state.inner_state.count) == 1
    assert np.isfinite(np.asarray(updates[bad])).all() and np.asarray(updates[bad]).min() < -1e37


def test_the_verdict_sums_small_leaves_of_one_size_in_one_reduction() -> None:
    """200 gradients of 16 elements: the jitted dynamic step reduces a stack of them, not each
    one (a reduction per leaf costs a kernel launch more than its arithmetic)."""
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.01, 0.9))
    p = [jnp.ones(16, jnp.float32)] * 200
    text = jax.jit(tx.update).lower(p, tx.init(p), p).compile().as_text()
    reductions = text.count(" reduce(") + text.count(" reduce-window(")
    assert 0 < reductions < 20


@pytest.mark.parametrize("g", [np.asarray([3, -4], np.int32), np.asarray([3 + 1j, -0.5j], np.complex64)])
def test_a_gradient_that_is_not_real_floating_is_divided(g) -> None:
    """The product with the reciprocal is for real floating dtypes (``frexp``, normal
    numbers); any other gradient is divided, as before."""
    got = unscaled(jnp.asarray(g), 2.0)
    np.testing.assert_array_equal(got, g / g.dtype.type(2))
