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
agreement is tested, not assumed (``tests/test_numba_fast_path.py`` and the
conformance suite's family 7, which declares zero roundings for this kernel).

The loop is compiled on first use, once per dtype, rank, layout and
writeability of the gradient (about half a second for the first), and kept
in Numba's on-disk cache for later processes; C-contiguous
arrays take a flat loop, others go element by element in index order. It
takes only what it computes exactly as the generic step: float32 or float64
``numpy.ndarray`` (not a subclass, whose operators may mean something else)
of one dtype and shape of rank 1 or more, ``p`` and ``v`` writeable, ``lr`` and
``m`` within the dtype's range, and three arrays that share no memory (with ``g is v`` the
generic step scales ``g`` before it subtracts it; a fused pass could not).
0-d arrays are declined because NumPy 1.x computes their step in the
promotion of the dtype and the scalar's type (float64 for a Python float; see
:mod:`corrmom_ref._backends.scalars`), not in the dtype as this loop does.
Anything else is declined and takes the generic step.
"""

from __future__ import annotations

from functools import cache
from itertools import repeat
from operator import attrgetter, is_, is_not
from typing import Any

import numpy as np

__all__ = ["available", "corrected_steps"]

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

    Compiled code is cached on disk, so a later process skips the compilation
    (about 0.3 s of its first step here); where Numba finds no writable place
    for its cache, the loop is compiled anew in each process instead.
    """
    import numba

    try:
        return numba.njit(nogil=True, cache=True)(_corrected_loop)
    except RuntimeError:  # Numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, cache=False)(_corrected_loop)


def _corrected_loop(p: Any, g: Any, v: Any, lr: Any, m: Any) -> None:  # pragma: no cover - compiled
    """The loop Numba compiles: C-contiguous arrays flat, any others element by element."""
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


_dtype_of = attrgetter("dtype")
_shape_of = attrgetter("shape")
_base_of = attrgetter("base")
_writeable = attrgetter("flags.writeable")


def _all_take(ps: list[Any], gs: list[Any], vs: list[Any], dtype: np.dtype) -> bool:
    """:func:`_takes` of every triple, asked of whole lists (C-level ``map``): a ``False``
    here may be wrong (views), and is then asked triple by triple."""
    arrays = [*ps, *gs, *vs]
    count = len(arrays)
    return (
        list(map(type, arrays)).count(np.ndarray) == count
        and list(map(_dtype_of, arrays)).count(dtype) == count
        and list(map(_shape_of, ps)) == list(map(_shape_of, gs)) == list(map(_shape_of, vs))
        and () not in map(_shape_of, ps)
        and all(map(_writeable, ps))
        and all(map(_writeable, vs))
        and all(map(is_, map(_base_of, arrays), repeat(None)))  # every array owns its memory
        and all(map(is_not, ps, gs))
        and all(map(is_not, gs, vs))
        and all(map(is_not, ps, vs))
    )


def _takes(p: Any, g: Any, v: Any, dtype: np.dtype) -> bool:
    """Whether the loop computes this triple exactly as the generic step does."""
    if not (type(p) is np.ndarray and type(g) is np.ndarray and type(v) is np.ndarray):
        return False
    if not (p.dtype is dtype and g.dtype is dtype and v.dtype is dtype and p.shape == g.shape == v.shape):
        return False
    if p.ndim == 0:
        return False
    if not (p.flags.writeable and v.flags.writeable):
        return False
    return _separate(p, g, v)


def _separate(p: Any, g: Any, v: Any) -> bool:
    """Whether no two of the three arrays share memory.

    Arrays that own their memory (``base is None``) are separate unless they
    are the same object; views are asked of NumPy (a bounds test).
    """
    if p is g or g is v or p is v:
        return False
    if p.base is None and g.base is None and v.base is None:
        return True
    return not (np.may_share_memory(p, g) or np.may_share_memory(g, v) or np.may_share_memory(p, v))


def _scalars(dtype: Any, lr: float, m: float) -> tuple[Any, Any] | None:
    """``lr`` and ``m`` as scalars of ``dtype``, or ``None`` if not a float32/float64 dtype or out of its range."""
    largest = _LARGEST.get(dtype)
    if largest is None or not (abs(lr) <= largest and abs(m) <= largest):
        return None
    return dtype.type(lr), dtype.type(m)


def corrected_steps(
    ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float
) -> tuple[list[Any], list[Any]] | None:
    """Update every ``p`` and ``v`` in place, triple after triple; ``None`` if any triple is declined.

    Every triple is checked before the first is touched, so a declined list
    is left as it was. The triples are stepped in order, as the generic step
    does, so a parameter given twice (tied) moves twice as it would there.
    """
    if not ps or not isinstance(ps[0], np.ndarray):
        return None
    dtype = ps[0].dtype
    scalars = _scalars(dtype, lr, m)
    if scalars is None:
        return None
    if not _all_take(ps, gs, vs, dtype):
        for p, g, v in zip(ps, gs, vs, strict=True):
            if not _takes(p, g, v, dtype):
                return None
    loop = _loop()
    lr_scalar, m_scalar = scalars
    for p, g, v in zip(ps, gs, vs, strict=True):
        loop(p, g, v, lr_scalar, m_scalar)
    return ps, vs
