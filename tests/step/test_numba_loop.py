"""NumPy's fast path, a Numba loop: bitwise the generic step where it runs, and untouched inputs where it declines.

Runs where Numba is installed (``nox -s "tests-backend(backend='numba')"``); elsewhere
each test is skipped with the reason.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corrmom_ref._step import policy
from corrmom_ref._step.kernels import numba as numba_update
from corrmom_ref.fast_paths import kernel_roundings, use_fast_paths

pytest.importorskip("numba", reason="Numba is not installed")

XP = array_namespace(np.zeros(1))
LR, M = 0.013, 0.9


def _assert_bitwise(a: np.ndarray, b: np.ndarray) -> None:
    """Equal dtype, shape, NaN positions and, everywhere else, bit patterns (so -0.0 != 0.0)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    np.testing.assert_array_equal(nan_a, nan_b)
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    np.testing.assert_array_equal(a[~nan_a].view(bits), b[~nan_b].view(bits))


def _step(arrays: list[np.ndarray], fast: bool, lr: float = LR, m: float = M) -> tuple[np.ndarray, ...]:
    p, g, v = (a.copy() for a in arrays)
    with use_fast_paths(fast):
        new_p, new_v = policy.dispatched_corrected_step(XP, p, g, v, lr, m)
    return new_p, new_v, p, v


@st.composite
def _triples(draw: st.DrawFn) -> list[np.ndarray]:
    """Three arrays of one dtype and shape: random mantissas (where roundings differ if the
    loop computed anything otherwise) at a drawn scale, with some elements replaced by
    Hypothesis's floats (infinities, NaN, subnormals, signed zeros, extremes)."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    width = 32 if dtype == "float32" else 64
    out = []
    for _ in range(3):
        scale = draw(st.sampled_from([1e-3, 1.0, 1e3, 1e30]))
        base = (rng.standard_normal(shape) * scale).astype(dtype)
        special = draw(hnp.arrays(dtype, shape, elements=st.floats(width=width)))
        replaced = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
        out.append(np.where(replaced, special, base).astype(dtype))
    return out


@given(
    arrays=_triples(),
    lr=st.sampled_from([LR, 0.0, 1.0, 3e38, 1e300]),
    m=st.sampled_from([M, 0.0, 1.0, 0.5, 1e-40]),
)
def test_loop_is_bitwise_the_generic_step(arrays: list[np.ndarray], lr: float, m: float) -> None:
    """Including infinities, NaN, subnormals, zero momentum and hyperparameters beyond float32's range.

    The generic step warns (NumPy's RuntimeWarning) where such inputs overflow
    or meet inf - inf; the warnings are caught here, and each must be one of
    those and, unless the arrays are empty, come with a non-finite result.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast_p, fast_v, p, v = _step(arrays, fast=True, lr=lr, m=m)
        generic_p, generic_v, _, _ = _step(arrays, fast=False, lr=lr, m=m)
    for warning in caught:
        assert warning.category is RuntimeWarning, warning
        assert re.match(
            r"(overflow|invalid value) encountered in (multiply|add|subtract|cast)", str(warning.message)
        )
    if caught and generic_p.size:  # an empty array warns only for the scalar lr cast to float32
        assert not (np.isfinite(generic_p).all() and np.isfinite(generic_v).all()), caught
    _assert_bitwise(fast_p, generic_p)
    _assert_bitwise(fast_v, generic_v)
    assert fast_p is p and fast_v is v  # in place, as the generic step on writeable arrays


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loop_runs_and_is_bitwise_on_a_large_array(dtype: str) -> None:
    rng = np.random.default_rng(5)
    arrays = [(rng.standard_normal((523, 509)) * s).astype(dtype) for s in (1.0, 1e3, 1e-3)]
    p, g, v = (a.copy() for a in arrays)
    assert numba_update.accepts([p], [g], [v], LR, M)
    assert numba_update.run([p], [g], [v], LR, M) == ([p], [v])
    generic_p, generic_v, _, _ = _step(arrays, fast=False)
    _assert_bitwise(p, generic_p)
    _assert_bitwise(v, generic_v)


@pytest.mark.parametrize("which", ["g", "v", "p, g and v"])
def test_strided_arrays_are_taken_and_bitwise(which: str) -> None:
    """Transposed (non-contiguous) arrays go element by element, with the generic step's result."""
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal((7, 5)).astype(np.float32) for _ in range(3)]
    strided = [a.T.copy().T if name in which else a for name, a in zip("pgv", arrays, strict=True)]
    assert not all(a.flags.c_contiguous for a in strided)
    p, g, v = (np.copy(a, order="K") for a in strided)
    assert numba_update.accepts([p], [g], [v], LR, M)
    numba_update.run([p], [g], [v], LR, M)
    generic_p, generic_v, _, _ = _step(strided, fast=False)
    _assert_bitwise(p, generic_p)
    _assert_bitwise(v, generic_v)


def test_numpy_namespace_has_the_loop_and_declares_it_bitwise() -> None:
    p, g, v = (np.ones(3, np.float32) for _ in range(3))
    assert policy.native_kernel(XP) is numba_update
    assert policy.choose("corrected", XP, [p], [g], [v], LR, M).name == "numba"
    assert numba_update.ROUNDINGS == kernel_roundings(XP) == 0


class _Subclass(np.ndarray):
    pass


def _odd(kind: str, p: np.ndarray, g: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """The triple made unfit for the loop in one way."""
    if kind == "dtype":
        return p, g, v.astype(np.float64)
    if kind == "float16":
        return p.astype(np.float16), g.astype(np.float16), v.astype(np.float16)
    if kind == "big-endian":
        return p.astype(">f4"), g.astype(">f4"), v.astype(">f4")
    if kind == "shape":
        return p, g.reshape(2, -1), v
    if kind in ("read-only p", "read-only v"):
        target = p if kind == "read-only p" else v
        target.flags.writeable = False
        return p, g, v
    if kind == "subclass":
        return p.view(_Subclass), g, v
    if kind == "g is v":
        return p, v, v
    if kind == "overlapping views":
        buffer = np.concatenate([p, v[:1]])
        return buffer[:-1], g, buffer[1:]
    raise AssertionError(kind)


ODD = ["dtype", "float16", "big-endian", "shape", "read-only p", "read-only v"]
ODD += ["subclass", "g is v", "overlapping views"]


@pytest.mark.parametrize("kind", ODD)
def test_an_unfit_triple_anywhere_in_the_lists_is_declined_untouched(kind: str) -> None:
    rng = np.random.default_rng(3)
    triples = [[rng.standard_normal(6).astype(np.float32) for _ in range(3)] for _ in range(3)]
    triples[1] = list(_odd(kind, *triples[1]))
    before = [[a.copy() for a in triple] for triple in triples]
    ps, gs, vs = (list(arrays) for arrays in zip(*triples, strict=True))
    assert not numba_update.accepts(ps, gs, vs, LR, M)
    for triple, kept in zip(triples, before, strict=True):
        for a, b in zip(triple, kept, strict=True):
            _assert_bitwise(np.asarray(a), b)


@pytest.mark.parametrize(("lr", "m"), [(1e39, M), (LR, 1e39)])
def test_hyperparameters_beyond_float32_are_declined(lr: float, m: float) -> None:
    p, g, v = (np.ones(4, np.float32) for _ in range(3))
    assert not numba_update.accepts([p], [g], [v], lr, m)
    np.testing.assert_array_equal(p, 1.0)


def test_tied_parameters_and_views_of_one_buffer_step_as_the_generic_loop() -> None:
    """A parameter listed twice moves twice, in order (the loop declines the list, the policy steps
    it triple by triple); disjoint views of one buffer are taken."""
    rng = np.random.default_rng(8)
    buffer = rng.standard_normal(20).astype(np.float32)
    tied = rng.standard_normal(10).astype(np.float32)
    grads = [rng.standard_normal(10).astype(np.float32) for _ in range(4)]
    states = [rng.standard_normal(10).astype(np.float32) for _ in range(4)]
    results = []
    for fast in (True, False):
        views, shared = buffer.copy(), tied.copy()
        ps, gs, vs = (
            [views[:10], views[10:], shared, shared],
            [g.copy() for g in grads],
            [s.copy() for s in states],
        )
        if fast:
            assert numba_update.accepts(ps[:2], gs[:2], vs[:2], LR, M)  # the views
            assert not numba_update.accepts(ps, gs, vs, LR, M)  # the tied pair
            policy.dispatched_corrected_steps(XP, ps, gs, vs, LR, M)
        else:
            with use_fast_paths(False):
                policy.dispatched_corrected_steps(XP, ps, gs, vs, LR, M)
        results.append([views, shared, *vs])
    for fast_array, generic_array in zip(*results, strict=True):
        _assert_bitwise(fast_array, generic_array)


def test_the_loop_compiles_without_a_place_for_numbas_cache(monkeypatch) -> None:
    """Where Numba finds no writable cache folder (``cache=True`` raises), the loop is compiled per process."""
    import numba

    njit = numba.njit

    def no_cache(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function 'corrected_loop': no locator available")
        return njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", no_cache)
    loop = numba_update._loop.__wrapped__()
    p, g, v = np.ones(3), np.full(3, 2.0), np.full(3, 0.5)
    loop(p, g, v, np.array([0.25, 0.5]))  # [lr, m]
    np.testing.assert_array_equal(v, 0.5 * 0.5 - 2.0)
    np.testing.assert_array_equal(p, 1.0 + 0.25 * (0.5 * 0.5 - 2.0))
