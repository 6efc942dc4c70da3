r"""Native fast paths of the corrected-momentum step against the generic Array API step.

The fast paths of PyTorch and JAX fuse ``m*v - g`` and ``p + lr*v`` into
multiply-adds (PyTorch's fused SGD kernel, XLA), so they skip one rounding of
each product (NumPy's Numba loop does not: tests/step/test_numba_loop.py). With
:math:`\epsilon` the dtype's machine epsilon the stated bound is

.. math::

    |v_f - v_g| \le \epsilon\,(|m v| + |v_g|), \qquad
    |p_f - p_g| \le \eta\,\epsilon\,(|m v| + |v_g|) + \epsilon\,(|\eta v_g| + |p_g|)

(one rounding of each product and result in either path, at most half an
ulp each; the suite's :func:`corrmom_conformance.oracle.beyond_rounding_bound`
with one rounding, the bound the conformance suite applies too). Where a fast path declines the inputs, the result is the generic
one bitwise.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from corrmom_conformance import backends as registry
from corrmom_conformance.oracle import beyond_rounding_bound
from corrmom_ref._step import policy
from corrmom_ref.fast_paths import use_fast_paths

LR, M = 0.013, 0.9


def corrected_kernel(xp):
    """``xp``'s native kernel as a one-triple function returning ``None`` where it declines, or ``None``."""
    native = policy.native_kernel(xp)
    if native is None:
        return None

    def step(p, g, v, lr, m):
        if not native.accepts([p], [g], [v], lr, m):
            return None
        (p,), (v,) = native.run([p], [g], [v], lr, m)
        return p, v

    return step


def _inputs(n: int, dtype: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = rng.choice([1e-3, 1.0, 1e3], size=(3, n))  # mixed magnitudes provoke cancellation
    arrays = [(rng.standard_normal(n) * s).astype(dtype) for s in scale]
    arrays[2][:5] = 0.0  # the first step's zero state
    return arrays


def _check_bound(p0, v0, fast, generic, dtype):
    """One rounding per product (the suite's bound, :func:`corrmom_conformance.oracle.beyond_rounding_bound`)."""
    assert np.dtype(generic[0].dtype) == np.dtype(dtype)
    where = beyond_rounding_bound("p", fast, generic, v0, LR, M, roundings=1)
    assert where is None, where


def _run(xp, to_native, to_numpy, arrays, fast: bool, lr=LR, m=M):
    p, g, v = (to_native(a.copy()) for a in arrays)
    with use_fast_paths(fast):
        p, v = policy.dispatched_corrected_step(xp, p, g, v, lr, m)
    return to_numpy(p), to_numpy(v)


def _registry(name: str):
    """The namespace and conversions of backend ``name`` from the one registry (skipped where it cannot load)."""
    try:
        loaded = registry.load(name)
    except ImportError as error:
        pytest.skip(f"{name} unavailable: {error}")
    return array_namespace(loaded.from_numpy(np.zeros(1, np.float32))), loaded.from_numpy, loaded.to_numpy


def _torch():
    return _registry("torch")


def _jax():
    return _registry("jax")


BACKENDS = {"torch": (_torch, ("float32", "float64")), "jax": (_jax, ("float32",))}
CASES = [(b, d) for b, (_, dtypes) in BACKENDS.items() for d in dtypes]


@pytest.mark.parametrize(("backend", "dtype"), CASES)
@pytest.mark.parametrize("n", [1, 1000, 70_001])
def test_fast_path_within_stated_bound_of_generic(backend, dtype, n):
    xp, to_native, to_numpy = BACKENDS[backend][0]()
    assert corrected_kernel(xp) is not None
    arrays = _inputs(n, dtype, seed=n)
    fast = _run(xp, to_native, to_numpy, arrays, fast=True)
    generic = _run(xp, to_native, to_numpy, arrays, fast=False)
    _check_bound(arrays[0], arrays[2], fast, generic, dtype)


def test_fast_path_is_taken_on_torch():
    torch = pytest.importorskip("torch")
    xp = array_namespace(torch.zeros(1))
    p, g, v = (torch.from_numpy(a) for a in _inputs(8, "float32", 0))
    assert corrected_kernel(xp)(p, g, v, LR, M) is not None


def test_torch_fast_path_updates_tensors_that_require_grad():
    """An ``nn.Parameter`` (``requires_grad``) is updated in place, as a plain tensor is, and records no graph."""
    torch = pytest.importorskip("torch")
    xp = array_namespace(torch.zeros(1))
    arrays = _inputs(64, "float32", 4)
    plain = [torch.from_numpy(a.copy()) for a in arrays]
    p, g, v = (torch.from_numpy(a.copy()) for a in arrays)
    p = torch.nn.Parameter(p)
    corrected_kernel(xp)(*plain, LR, M)
    assert corrected_kernel(xp)(p, g, v, LR, M) is not None
    assert p.grad_fn is None and p.requires_grad
    np.testing.assert_array_equal(p.detach().numpy(), plain[0].numpy())
    np.testing.assert_array_equal(v.numpy(), plain[2].numpy())


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_declined_inputs_give_the_generic_result_bitwise(backend):
    """``m == 0`` (torch) and mixed dtypes (both) fall back to the generic step."""
    xp, to_native, to_numpy = BACKENDS[backend][0]()
    arrays = _inputs(100, "float32", 1)
    fast = _run(xp, to_native, to_numpy, arrays, fast=True, m=0.0)
    generic = _run(xp, to_native, to_numpy, arrays, fast=False, m=0.0)
    if backend == "torch":
        np.testing.assert_array_equal(fast[0], generic[0])
        np.testing.assert_array_equal(fast[1], generic[1])
    else:
        _check_bound(arrays[0], arrays[2], fast, generic, "float32")
    mixed = [arrays[0], arrays[1].astype("float16"), arrays[2]]
    p, g, v = (to_native(a) for a in mixed)
    assert corrected_kernel(xp)(p, g, v, LR, M) is None


def test_numpy_has_a_fast_path_exactly_where_numba_is_installed():
    """NumPy's kernel is a Numba loop (tests/step/test_numba_loop.py); without Numba, the generic step."""
    from importlib.util import find_spec

    has_kernel = corrected_kernel(array_namespace(np.zeros(1))) is not None
    assert has_kernel == (find_spec("numba") is not None)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_strided_inputs_are_updated_correctly(backend):
    """A transposed gradient and state (non-contiguous on torch) give the generic result."""
    xp, to_native, to_numpy = BACKENDS[backend][0]()
    p, g, v = _inputs(300 * 200, "float32", 2)
    results = []
    for fast in (True, False):
        pn = to_native(p.reshape(300, 200).copy())
        gn, vn = (xp.permute_dims(to_native(a.reshape(200, 300).copy()), (1, 0)) for a in (g, v))
        with use_fast_paths(fast):
            results.append(tuple(map(to_numpy, policy.dispatched_corrected_step(xp, pn, gn, vn, LR, M))))
    _check_bound(p.reshape(300, 200), v.reshape(200, 300).T, results[0], results[1], "float32")


def test_jax_donation_gives_the_undonated_result_bitwise():
    xp, to_native, to_numpy = _jax()
    arrays = _inputs(1000, "float32", 3)
    kept = _run(xp, to_native, to_numpy, arrays, fast=True)
    p, g, v = (to_native(a.copy()) for a in arrays)
    with use_fast_paths(True, donate=True):
        donated = policy.dispatched_corrected_step(xp, p, g, v, LR, M)
    assert p.is_deleted() and v.is_deleted() and not g.is_deleted()
    for a, b in zip(kept, donated, strict=True):
        np.testing.assert_array_equal(a, to_numpy(b))


def test_jax_kernels_take_a_weakly_typed_array_of_the_right_dtype():
    """The JAX kernels compare ``aval`` first (it holds the weak type too), then dtype and shape."""
    _jax()
    import jax.numpy as jnp

    from corrmom_ref._step.kernels import jax as jax_update

    v = jnp.full((10,), 0.25)  # filled from a Python float: weakly typed, default float dtype
    p, g = (jnp.asarray(a, dtype=v.dtype) for a in _inputs(10, "float32", 4)[:2])
    assert v.aval != p.aval
    assert jax_update.accepts([p], [g], [v], LR, M)
    assert not jax_update.accepts([p], [g], [v[:5]], LR, M)


@pytest.mark.parametrize("which", ["p", "g", "v"])
@pytest.mark.parametrize("mismatch", ["device", "dtype", "shape", "strides"])
def test_torch_multi_kernel_declines_a_mismatched_tensor_anywhere_in_the_lists(which, mismatch):
    """torch's fused kernel checks nothing itself (a float64 buffer among float32 ones corrupts
    the heap), so one odd tensor in the middle of the lists must make the kernel decline untouched."""
    torch = pytest.importorskip("torch")
    from corrmom_ref._step.kernels import torch as torch_update

    lists = {name: [torch.ones(6) * (k + 1) for k in range(3)] for name in "pgv"}
    odd = lists[which][1]
    lists[which][1] = {
        "device": lambda t: t.to("meta"),
        "dtype": lambda t: t.to(torch.float64),
        "shape": lambda t: t.reshape(2, 3),
        "strides": lambda t: torch.stack([t, t], dim=1)[:, 0],
    }[mismatch](odd)
    before = {
        name: [t.clone() for t in tensors if t.device.type != "meta"] for name, tensors in lists.items()
    }
    assert not torch_update.accepts(lists["p"], lists["g"], lists["v"], LR, M)
    for name, tensors in lists.items():
        kept = [t for t in tensors if t.device.type != "meta"]
        for a, b in zip(kept, before[name], strict=True):
            assert torch.equal(a, b)


#: One odd thing in the last triple of many; the kernel must decline the lists (what the shared check
#: and the kernel refuse: ``corrmom_ref._step.admission``, ``accepts`` of each kernel).
ODD_LAST_TRIPLE = [
    *(f"{odd} of {which}" for odd in ("dtype", "shape", "strides", "array type") for which in "pgv"),
    "p is v",
    "g is v",
    "p tied to an earlier p",
    "g is an earlier v",
    "p is a view of g",
    "g is a view of v",
    "v is a view of p",
    "p and v overlap",
    "p and v: disjoint views of one buffer",
    "unequal lengths: no last g",
    "read-only p",
    "read-only v",
    "a 0-d triple",
]


class _NdarraySubclass(np.ndarray):
    """A subclass, whose operators may mean something else: the Numba loop takes exact ``ndarray`` only."""


def _tensor_of_another_library() -> type:
    """A ``torch.Tensor`` subclass defined outside PyTorch (the shared check takes one library's arrays)."""
    import torch

    return type("OtherTensor", (torch.Tensor,), {"__module__": "another_library"})


def _odd(kind: str, a, to_native):
    if kind == "dtype":
        return to_native(np.asarray(a).astype(np.float64))
    if kind == "shape":
        return to_native(np.asarray(a).reshape(2, 3).copy())
    if kind == "strides":
        if isinstance(a, np.ndarray):
            return np.stack([a] * 2, axis=1)[:, 0]
        import torch

        return torch.empty_strided(a.shape, (2,)).copy_(a)  # owns its memory (not a view)
    if isinstance(a, np.ndarray):
        odd = _NdarraySubclass(a.shape, a.dtype)  # owns its memory (not a view)
        odd[...] = a
        return odd
    import torch

    return torch.Tensor._make_subclass(
        _tensor_of_another_library(), a.clone()
    )  # another library's tensor, not a view


def _with_odd_last_triple(kind: str, to_native, n: int = 40) -> tuple[list, list, list]:
    rng = np.random.default_rng(7)
    lists = {name: [to_native(rng.standard_normal(6).astype(np.float32)) for _ in range(n)] for name in "pgv"}
    ps, gs, vs = lists["p"], lists["g"], lists["v"]
    if " of " in kind and "view" not in kind:
        odd, which = kind.split(" of ")
        lists[which][-1] = _odd(odd, lists[which][-1], to_native)
    elif kind == "p is v":
        vs[-1] = ps[-1]
    elif kind == "g is v":
        gs[-1] = vs[-1]
    elif kind == "p tied to an earlier p":
        ps[-1] = ps[0]
    elif kind == "g is an earlier v":
        gs[-1] = vs[3]
    elif kind.endswith(" is a view of g"):
        ps[-1] = gs[-1][:]
    elif kind.endswith(" is a view of v"):
        gs[-1] = vs[-1][:]
    elif kind.endswith(" is a view of p"):
        vs[-1] = ps[-1][:]
    elif kind == "p and v overlap":
        buffer = to_native(np.arange(7, dtype=np.float32))
        ps[-1], vs[-1] = buffer[:6], buffer[1:]
    elif kind == "p and v: disjoint views of one buffer":
        buffer = to_native(np.arange(12, dtype=np.float32))
        ps[-1], vs[-1] = buffer[:6], buffer[6:]
    elif kind == "unequal lengths: no last g":
        del gs[-1]
    elif kind.startswith("read-only"):
        frozen = np.ones(6, np.float32)
        frozen.flags.writeable = False
        lists[kind[-1]][-1] = frozen
    elif kind == "a 0-d triple":
        ps[-1], gs[-1], vs[-1] = (to_native(np.asarray(x, np.float32)) for x in (1.0, 2.0, 3.0))
    return ps, gs, vs


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kind", ODD_LAST_TRIPLE)
def test_native_kernels_decline_an_odd_last_triple_of_many(backend, kind):
    """Regression guard for the kernels' quick checks (issue 22): they read all triples at once or in one
    pass, and an odd last triple must still make the native kernel decline the whole list, untouched.
    The Numba loop takes two cases PyTorch's kernel does not: strides (it walks them) and disjoint
    views of one buffer (NumPy's ``may_share_memory`` looks at the bounds); PyTorch's takes 0-d tensors."""
    if backend == "torch":
        torch = pytest.importorskip("torch")
        to_native = torch.from_numpy
        if kind.startswith("read-only"):
            pytest.skip("PyTorch tensors have no read-only flag")
    else:
        to_native = np.asarray
    native = policy.native_kernel(array_namespace(to_native(np.zeros(1, np.float32))))
    if native is None:
        pytest.skip(f"no native kernel for {backend} here")
    ps, gs, vs = _with_odd_last_triple(kind, to_native)
    before = [np.asarray(a).copy() for a in (*ps, *gs, *vs)]
    expected = (backend == "numpy" and (kind.startswith("strides") or "disjoint" in kind)) or (
        backend == "torch" and kind == "a 0-d triple"  # the fused kernel takes 0-d tensors
    )
    assert native.accepts(ps, gs, vs, LR, M) is expected
    for a, b in zip((*ps, *gs, *vs), before, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    if not expected:
        with use_fast_paths(True):
            chosen = policy.choose("corrected", array_namespace(ps[0]), ps, gs, vs, LR, M)
        assert chosen.name == "per triple"
