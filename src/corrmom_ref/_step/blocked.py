"""The reference step made fast without a native kernel: blocked, with its scalar operands made once.

Both updates are memory-bound elementwise passes. Where a backend writes
slices of an array in place (NumPy, PyTorch, CuPy, array-api-strict), a large
parameter is stepped in cache-sized blocks of a flat view, so that the one
temporary (``lr * v``) never leaves the cache; several triples share ``lr``
and ``m`` converted to 0-d arrays once (:class:`_ScalarOperands`); and a list
of triples that are all alike is sent through the in-place step without
asking each triple again (:func:`_one_kind_of_small_writeable`). Every triple
runs the reference's own in-place or pure step
(:mod:`corrmom_ref._step.reference`) on the same elements in the same order, so the
result is the reference's bit for bit (``ROUNDINGS = 0``). Why each of these
pays is measured in ``benchmarks/RESULTS.md`` ("Measurements behind the fast
paths' design choices").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from operator import attrgetter
from typing import Any

from array_api_compat import is_numpy_array, is_writeable_array

from corrmom_ref._namespace import device_of
from corrmom_ref._step.reference import in_input_dtypes

__all__ = ["BLOCK_ELEMENTS", "ROUNDINGS", "BlockedStep", "accepts", "slices_are_views"]

#: Elements per block of the in-place passes: the three float32 operand
#: slices and the temporary stay within a typical L3 cache, and the temporary
#: (1 MiB) within the 2 MiB a step may allocate (the size was chosen by the
#: block-size row of ``benchmarks/RESULTS.md``).
BLOCK_ELEMENTS = 1 << 18

#: Roundings by which this path may differ from the reference step: none.
ROUNDINGS = 0

Array = Any
InPlace = Callable[[Array, Array, Array, Any, Any], tuple[Array, Array]]


def accepts(xp: Any) -> bool:
    """Whether this path adds anything on ``xp``: its slices are views written in place."""
    return slices_are_views(xp)


class BlockedStep:
    """One momentum update (the reference's in-place and pure forms), run fast over lists."""

    def __init__(self, in_place: InPlace, pure: InPlace) -> None:
        self.in_place = in_place
        self.pure = pure

    def steps(
        self, xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
    ) -> tuple[list[Array], list[Array]]:
        """Step each ``(p, g, v)``; the new ``(ps, vs)``.

        A triple whose ``p`` and ``v`` can be written is updated in place
        (in blocks of flat views when it is larger than :data:`BLOCK_ELEMENTS`),
        any other is computed anew.
        """
        in_place = self.in_place
        operands = _ScalarOperands(xp, lr, m)
        many = len(ps) > 1
        if many and _one_kind_of_small_writeable(xp, ps, gs, vs):
            # the common batch: the choice below is the same for every triple, made once
            lr_operand, m_operand = operands.of(ps[0], gs[0], vs[0])
            for p, g, v in zip(ps, gs, vs, strict=True):
                in_place(p, g, v, lr_operand, m_operand)
            return ps, vs
        views = slices_are_views(xp)
        new_ps, new_vs = [], []
        for p, g, v in zip(ps, gs, vs, strict=True):
            if not (_is_writeable(p) and _is_writeable(v)):
                p, v = self.pure(p, g, v, lr, m)
            elif views and math.prod(p.shape) > BLOCK_ELEMENTS:
                p, v = _run_blocked(xp, in_place, p, g, v, *operands.of(p, g, v))
            else:
                p, v = in_input_dtypes(in_place(p, g, v, *(operands.of(p, g, v) if many else (lr, m))), p, v)
            new_ps.append(p)
            new_vs.append(v)
        return new_ps, new_vs


_dtype_of = attrgetter("dtype")
_shape_of = attrgetter("shape")
_numpy_writeable = attrgetter("flags.writeable")


def _one_kind_of_small_writeable(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array]) -> bool:
    """Whether every array has the type and dtype of ``ps[0]``, every ``p`` and ``v`` can be
    written in place, and no ``p`` is 0-d or large enough to be blocked: then every triple
    takes the same path (asked of whole lists with C-level iteration)."""
    first = ps[0]
    arrays = [*ps, *gs, *vs]
    if list(map(type, arrays)).count(type(first)) != len(arrays):
        return False
    if list(map(_dtype_of, arrays)).count(first.dtype) != len(arrays):
        return False
    if is_numpy_array(first):
        if not (all(map(_numpy_writeable, ps)) and all(map(_numpy_writeable, vs))):
            return False
    elif not (_is_writeable(first) and slices_are_views(xp)):  # writes in place, not rebinding (Dask)
        return False
    shapes = list(map(_shape_of, ps))
    if () in shapes:  # a 0-d triple keeps Python scalars (_ScalarOperands.of): decided per triple
        return False
    return not (slices_are_views(xp) and max(map(math.prod, shapes)) > BLOCK_ELEMENTS)


class _ScalarOperands:
    r"""``(lr, m)`` as 0-d arrays of the operands' dtype where that changes no result.

    The standard converts a Python scalar operand to a 0-d array of the
    other operand's dtype, so ``v * m`` and ``v * xp.asarray(m, dtype=v.dtype)``
    are the same product, and a batch converts once per dtype rather than in
    every operation. Only values within the range of float32 or float64 are
    converted: NumPy 1.x widens the result for a Python float beyond the
    dtype's range, and PyTorch multiplies float16 by a float32 copy of the
    scalar. Operands of 0-d arrays are never converted: NumPy 1.x computes
    ``v * m`` for a 0-d ``v`` in the promotion of ``v``'s dtype and ``m``'s type
    (float64 for a Python float; see :mod:`corrmom_ref._step.operands`),
    which a 0-d operand of ``v``'s dtype would change.
    """

    def __init__(self, xp: Any, lr: Any, m: Any) -> None:
        self.xp = xp
        self.floats = (lr, m)
        self.by_dtype: dict[Any, tuple[Any, Any]] = {}

    def of(self, p: Array, g: Array, v: Array) -> tuple[Any, Any]:
        """The ``(lr, m)`` to use for one triple."""
        dtype = v.dtype
        if not dtype == p.dtype == g.dtype or len(p.shape) == 0:
            return self.floats
        operands = self.by_dtype.get(dtype)
        if operands is None:
            operands = self.by_dtype[dtype] = self._converted(dtype, device_of(v))
        return operands

    def _converted(self, dtype: Any, place: Any) -> tuple[Any, Any]:
        xp = self.xp
        if dtype not in (xp.float32, xp.float64):
            return self.floats
        largest = xp.finfo(dtype).max
        if not all(abs(value) <= largest for value in self.floats):
            return self.floats
        lr, m = (xp.asarray(value, dtype=dtype, device=place) for value in self.floats)
        return lr, m


#: Per array type: whether its arrays can be written in place, or ``None``
#: where that is a property of each array (NumPy's ``flags.writeable``).
_WRITEABLE_BY_TYPE: dict[type, bool | None] = {}


def _is_writeable(x: Array) -> bool:
    """``array_api_compat.is_writeable_array(x)``, with the per-type part looked up once."""
    kind = type(x)
    if kind not in _WRITEABLE_BY_TYPE:
        _WRITEABLE_BY_TYPE[kind] = None if is_numpy_array(x) else is_writeable_array(x)
    writeable = _WRITEABLE_BY_TYPE[kind]
    return bool(x.flags.writeable) if writeable is None else writeable


def _run_blocked(
    xp: Any, kernel: InPlace, p: Array, g: Array, v: Array, lr: Any, m: Any
) -> tuple[Array, Array]:
    """Apply ``kernel`` slice by slice of flat views (whole if the arrays have none)."""
    fp, fg, fv = (_flat_view(xp, a) for a in (p, g, v))
    if fp is None or fg is None or fv is None:
        return in_input_dtypes(kernel(p, g, v, lr, m), p, v)
    n = fp.shape[0]
    for start in range(0, n, BLOCK_ELEMENTS):
        block = slice(start, min(start + BLOCK_ELEMENTS, n))
        kernel(fp[block], fg[block], fv[block], lr, m)
    return p, v


def _flat_view(xp: Any, a: Array) -> Array | None:
    """A 1-D view of ``a`` sharing its memory, or ``None`` if there is none."""
    try:
        return xp.reshape(a, (-1,), copy=False)
    except (ValueError, TypeError, NotImplementedError, AttributeError, RuntimeError):
        return None


@cache
def slices_are_views(xp: Any) -> bool:
    """Whether writing into ``x[i:j]`` in place writes into ``x`` on this backend.

    The standard leaves views to the implementation, so this is probed once
    per namespace rather than assumed.
    """
    try:
        probe = xp.zeros((2,))
        part = probe[0:1]
        part += 1.0
        return bool(probe[0] == 1.0)
    except Exception:  # a backend that cannot do this has no views to use
        return False
