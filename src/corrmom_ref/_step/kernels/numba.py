r"""NumPy: the corrected-momentum step as one compiled loop, where Numba is installed.

The Array API step makes four passes over memory (``v *= m; v -= g;
t = lr * v; p += t``). This loop makes one, element by element:

.. math:: x = m\,v_i - g_i, \qquad v_i \leftarrow x, \qquad p_i \leftarrow p_i + \eta\,x

with the same roundings in the same order (a product, then the difference;
a product, then the sum), in the arrays' own dtype: Numba compiles without
fast-math, so nothing is contracted into a fused multiply-add and the result
is the generic step's bit for bit (and so Chainer's on NumPy). One thing IEEE
754 leaves open is excepted: which NaN ``p_i + eta x`` returns when both
operands are NaN. NumPy's own answer depends on the array's length (its SIMD
and scalar loops order the operands differently), so the loop, which cannot
follow that, may return the other NaN there: the same elements are NaN, with
possibly another sign or payload (``docs/quirks.md``, row 17). The bitwise
agreement is tested, not assumed (``tests/step/test_numba_loop.py`` and the
conformance suite's family 7, which declares zero roundings for this kernel).

The loop is compiled on first use, once per dtype, rank, layout and
writeability of the gradient, and kept in Numba's on-disk cache for later
processes (the compile time is in ``benchmarks/RESULTS.md``); C-contiguous
arrays take a flat loop, others go element by element in index order. It
takes only what it computes exactly as the generic step (:func:`accepts`):
float32 or float64 ``numpy.ndarray`` (not a subclass, whose operators may
mean something else) of one dtype and shape of rank 1 or more, ``p`` and ``v``
writeable, ``lr`` and ``m`` within the dtype's range, and arrays that are not
aliased (:func:`~corrmom_ref._step.admission.alike_and_separate`: with
``g is v`` the generic step scales ``g`` before it subtracts it; a fused pass
could not).
0-d arrays are declined because NumPy 1.x computes their step in the
promotion of the dtype and the scalar's type (float64 for a Python float; see
:mod:`corrmom_ref._step.operands`), not in the dtype as this loop does.
Anything else is declined and takes the generic step.
"""

from __future__ import annotations

from functools import cache
from operator import attrgetter
from typing import Any

import numpy as np

from corrmom_ref._step.admission import alike_and_separate, all_distinct

__all__ = ["ROUNDINGS", "accepts", "available", "run"]

#: Roundings by which the loop may differ from the reference step: none (bitwise, NaN payloads aside).
ROUNDINGS = 0

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
#: Per dtype: the largest finite value (a hyperparameter beyond it is declined).
_LARGEST = {_FLOAT32: float(np.finfo(np.float32).max), _FLOAT64: float(np.finfo(np.float64).max)}


@cache
def available() -> bool:
    """Whether Numba can be imported here."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def _loop() -> Any:
    """The compiled loop (Numba is imported, and the dispatcher built, on first use).

    Compiled code is cached on disk, so a later process skips the compilation;
    where Numba finds no writable place for its cache, the loop is compiled
    anew in each process instead.
    """
    import numba

    try:
        return numba.njit(nogil=True, cache=True)(_corrected_loop)
    except RuntimeError:  # Numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, cache=False)(_corrected_loop)


def _corrected_loop(p: Any, g: Any, v: Any, scalars: Any) -> None:  # pragma: no cover - compiled
    """The loop Numba compiles: C-contiguous arrays flat, any others element by element.

    ``scalars`` is ``[lr, m]`` as an array of the dtype (one array argument is
    typed faster by Numba's dispatcher than two scalars).
    """
    lr = scalars[0]
    m = scalars[1]
    if p.flags.c_contiguous and g.flags.c_contiguous and v.flags.c_contiguous:
        fp = p.reshape(p.size)
        fg = g.reshape(g.size)
        fv = v.reshape(v.size)
        for i in range(fp.size):
            x = m * fv[i] - fg[i]
            fv[i] = x
            fp[i] = fp[i] + lr * x
    else:  # any strides: element by element in index order
        for index in np.ndindex(p.shape):
            x = m * v[index] - g[index]
            v[index] = x
            p[index] = p[index] + lr * x


def accepts(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> bool:
    """Whether the loop computes every triple exactly as the reference step does.

    The shared check (:func:`~corrmom_ref._step.admission.alike_and_separate`)
    plus: exactly ``numpy.ndarray`` of float32 or float64, no 0-d array,
    ``p`` and ``v`` writeable, ``lr`` and ``m`` within the dtype's range.
    The common case is answered by :func:`_plain_triples` and the identity
    test; any list it does not take is asked the whole check, so the answer
    is the same.
    """
    first = ps[0]
    if type(first) is not np.ndarray or _scalars(first.dtype, lr, m) is None:
        return False
    if _plain_triples(ps, gs, vs):
        if not all_distinct([*ps, *gs, *vs]):  # what is left of the shared check
            return False
    elif not alike_and_separate(ps, gs, vs, exact_type=True):  # no subclass
        return False
    return 0 not in map(_ndim_of, ps) and all(map(_writeable, ps)) and all(map(_writeable, vs))


def _plain_triples(ps: list[Any], gs: list[Any], vs: list[Any]) -> bool:
    """Whether the lists are of one length and every array is a ``numpy.ndarray`` of ``ps[0]``'s dtype
    that owns its memory, with one shape per triple.

    What the shared check asks, identities aside, in one pass over the
    triples that reads each array once, while it is in the cache (as the
    PyTorch kernel does: ``benchmarks/RESULTS.md``, "issue 22: the reference's
    small workload, third pass"). ``True`` is always right; ``False`` may be
    wrong (a view, another dtype object of the same dtype, ...).
    """
    if not len(ps) == len(gs) == len(vs):
        return False
    ndarray, dtype = np.ndarray, ps[0].dtype
    for p, g, v in zip(ps, gs, vs, strict=True):  # lengths compared above
        if not (
            type(p) is ndarray
            and type(g) is ndarray
            and type(v) is ndarray
            and p.dtype is dtype
            and g.dtype is dtype
            and v.dtype is dtype
            and p.shape == g.shape == v.shape
            and p.base is None  # owns its memory: not a view
            and g.base is None
            and v.base is None
        ):
            return False
    return True


def run(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> tuple[list[Any], list[Any]]:
    """Update every ``p`` and ``v`` in place, triple after triple (inputs :func:`accepts` took)."""
    scalars = _scalars(ps[0].dtype, lr, m)
    loop = _loop()
    for p, g, v in zip(ps, gs, vs, strict=True):
        loop(p, g, v, scalars)
    return ps, vs


_ndim_of = attrgetter("ndim")
_writeable = attrgetter("flags.writeable")


def _scalars(dtype: Any, lr: Any, m: Any) -> Any:
    """``[lr, m]`` as an array of ``dtype``, or ``None`` if not a float32/float64 dtype or out of its range."""
    largest = _LARGEST.get(dtype)
    if largest is None or not (abs(lr) <= largest and abs(m) <= largest):
        return None
    return np.array([dtype.type(lr), dtype.type(m)], dtype=dtype)
