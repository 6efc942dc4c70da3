"""The per-element arithmetic of the two momentum updates, and nothing else.

Both updates are memory-bound elementwise passes. On backends whose arrays
can be written in place (NumPy, CuPy, PyTorch, array-api-strict) they run in
place, blocked into cache-sized slices of a flat view so that the one
temporary (``lr * v``) never leaves the cache; on immutable or lazy backends
(JAX, Dask, read-only arrays) they are pure functions of their inputs. Either
way the caller must store the returned arrays: they are the inputs themselves
when the update ran in place.

The operation order is Chainer's on the CPU, so results on NumPy are bitwise
equal to Chainer's:

* corrected (eq. 9 with ``v = -u``): ``v *= m; v -= g; p += lr * v``
* uncorrected (eq. 10): ``v *= m; v -= lr * g; p += v``

Fast paths for particular backends replace this module's functions only:
:func:`corrected_momentum_step` first asks
:func:`corrmom_ref._backends.fast.corrected_kernel` for a native kernel, and
:func:`corrected_momentum_steps` (many parameters at once)
:func:`~corrmom_ref._backends.fast.corrected_multi_kernel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import cache
from operator import attrgetter
from typing import Any

from array_api_compat import is_numpy_array, is_writeable_array

from corrmom_ref._backends.fast import corrected_kernel, corrected_multi_kernel
from corrmom_ref._namespace import device_of

__all__ = [
    "BLOCK_ELEMENTS",
    "corrected_momentum_step",
    "corrected_momentum_steps",
    "momentum_step",
    "momentum_steps",
]

#: Elements per block of the in-place passes: 256 Ki elements puts the three
#: float32 operand slices and the temporary (4 MiB) within a typical L3 cache,
#: and the temporary (1 MiB) within the 2 MiB a step may allocate. On the
#: benchmark's machine (1 MiB L2, 32 MiB L3), a 16 Mi float32 step took 1.00,
#: 0.97, 0.95, 0.92 and 1.05 times as long with blocks of 64, 128, 256, 512 and
#: 1024 Ki elements; unblocked (four full passes) takes about 1.7 times as long.
BLOCK_ELEMENTS = 1 << 18

Array = Any
Kernel = Callable[[Array, Array, Array, float, float], tuple[Array, Array]]


def _corrected_in_place(p: Array, g: Array, v: Array, lr: float, m: float) -> tuple[Array, Array]:
    # Augmented assignment writes in place where the backend can and rebinds
    # where it cannot (Dask), hence the return value.
    v *= m
    v -= g
    p += lr * v
    return p, v


def _uncorrected_in_place(p: Array, g: Array, v: Array, lr: float, m: float) -> tuple[Array, Array]:
    v *= m
    v -= lr * g
    p += v
    return p, v


def corrected_momentum_step(
    xp: Any, p: Array, g: Array, v: Array, lr: float, m: float
) -> tuple[Array, Array]:
    r"""One corrected-momentum step; returns the new ``(p, v)``.

    .. math::

        v_{t+1} = m\,v_t - g_t, \qquad p_{t+1} = p_t + \eta_{t+1}\,v_{t+1}

    which is Goyal et al.'s eq. (9) for :math:`u = -v`.
    """
    fast = corrected_kernel(xp)
    if fast is not None:
        stepped = fast(p, g, v, lr, m)
        if stepped is not None:
            return stepped
    new_ps, new_vs = _CORRECTED.steps(xp, [p], [g], [v], lr, m)
    return new_ps[0], new_vs[0]


def corrected_momentum_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: float, m: float
) -> tuple[list[Array], list[Array]]:
    """``corrected_momentum_step`` on each ``(p, g, v)``; returns the new ``(ps, vs)``.

    One native call for all of them where the backend has a multi-tensor
    kernel (PyTorch's fused SGD, one JAX ``jit`` over the lists), else one
    step per triple. All arrays share one namespace, dtype and device.
    """
    fast = corrected_multi_kernel(xp)
    if fast is not None:
        stepped = fast(ps, gs, vs, lr, m)
        if stepped is not None:
            return stepped
    if corrected_kernel(xp) is not None:  # declined as a whole: the one-parameter kernel, triple by triple
        return _unzip(corrected_momentum_step(xp, p, g, v, lr, m) for p, g, v in zip(ps, gs, vs, strict=True))
    return _CORRECTED.steps(xp, ps, gs, vs, lr, m)


def momentum_step(xp: Any, p: Array, g: Array, v: Array, lr: float, m: float) -> tuple[Array, Array]:
    r"""One uncorrected momentum step (Chainer's ``MomentumSGD``); returns ``(p, v)``.

    .. math::

        v_{t+1} = m\,v_t - \eta_{t+1}\,g_t, \qquad p_{t+1} = p_t + v_{t+1}

    which is Goyal et al.'s eq. (10) with the sign of ``v`` flipped.
    """
    new_ps, new_vs = _UNCORRECTED.steps(xp, [p], [g], [v], lr, m)
    return new_ps[0], new_vs[0]


def momentum_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: float, m: float
) -> tuple[list[Array], list[Array]]:
    """``momentum_step`` on each ``(p, g, v)``; returns the new ``(ps, vs)``."""
    return _UNCORRECTED.steps(xp, ps, gs, vs, lr, m)


def _unzip(pairs: Iterable[tuple[Array, Array]]) -> tuple[list[Array], list[Array]]:
    new_ps, new_vs = [], []
    for p, v in pairs:
        new_ps.append(p)
        new_vs.append(v)
    return new_ps, new_vs


class _GenericStep:
    """One momentum update written with Array API operators: in place where it can, else pure."""

    def __init__(self, in_place: Kernel, pure: Callable[..., tuple[Array, Array]]) -> None:
        self.in_place = in_place
        self.pure = pure

    def steps(
        self, xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: float, m: float
    ) -> tuple[list[Array], list[Array]]:
        """Step each ``(p, g, v)``; the new ``(ps, vs)``.

        A triple whose ``p`` and ``v`` can be written is updated in place
        (in cache-sized blocks of flat views when it is large and the
        backend has views), any other is computed anew. When the in-place
        operations run more than once (several triples, or blocks), ``lr``
        and ``m`` are converted to arrays once (:class:`_ScalarOperands`).
        When every triple is alike (:func:`_one_kind_of_small_writeable`),
        that choice is made once for the whole list.
        """
        in_place = self.in_place
        operands = _ScalarOperands(xp, lr, m)
        many = len(ps) > 1
        if many and _one_kind_of_small_writeable(xp, ps, gs, vs):
            # the common batch: the choice below is the same for every triple, made once
            lr_operand, m_operand = operands.of(ps[0], gs[0], vs[0])
            return _unzip(
                in_place(p, g, v, lr_operand, m_operand) for p, g, v in zip(ps, gs, vs, strict=True)
            )
        views = _slices_are_views(xp)
        new_ps, new_vs = [], []
        for p, g, v in zip(ps, gs, vs, strict=True):
            if not (_is_writeable(p) and _is_writeable(v)):
                p, v = self.pure(xp, p, g, v, lr, m)
            elif views and math.prod(p.shape) > BLOCK_ELEMENTS:
                p, v = _run_blocked(xp, in_place, p, g, v, *operands.of(p, g, v))
            else:
                old_p, old_v = p, v
                p, v = in_place(p, g, v, *(operands.of(p, g, v) if many else (lr, m)))
                if p is not old_p or v is not old_v:  # rebound (Dask): keep the dtypes, as a write would
                    p, v = _keep_dtype(xp, p, old_p), _keep_dtype(xp, v, old_v)
            new_ps.append(p)
            new_vs.append(v)
        return new_ps, new_vs


_dtype_of = attrgetter("dtype")
_shape_of = attrgetter("shape")
_numpy_writeable = attrgetter("flags.writeable")


def _one_kind_of_small_writeable(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array]) -> bool:
    """Whether every array has the type and dtype of ``ps[0]``, every ``p`` and ``v`` can be
    written, and no ``p`` is 0-d or large enough to be blocked: then every triple takes the same path.

    Asked of whole lists with C-level iteration (``map``, ``list.count``), which costs about
    half as much as asking triple by triple (0.7 against 1.4 us per triple of NumPy arrays).
    """
    first = ps[0]
    arrays = [*ps, *gs, *vs]
    if list(map(type, arrays)).count(type(first)) != len(arrays):
        return False
    if list(map(_dtype_of, arrays)).count(first.dtype) != len(arrays):
        return False
    if is_numpy_array(first):
        if not (all(map(_numpy_writeable, ps)) and all(map(_numpy_writeable, vs))):
            return False
    elif not _is_writeable(first):
        return False
    shapes = list(map(_shape_of, ps))
    if () in shapes:  # a 0-d triple keeps Python scalars (_ScalarOperands.of): decided per triple
        return False
    return not (_slices_are_views(xp) and max(map(math.prod, shapes)) > BLOCK_ELEMENTS)


class _ScalarOperands:
    r"""``(lr, m)`` as 0-d arrays of the operands' dtype where that changes no result.

    The standard converts a Python scalar operand to a 0-d array of the
    other operand's dtype, so ``v * m`` and ``v * xp.asarray(m, dtype=v.dtype)``
    are the same product; NumPy 2 spends about half a microsecond on that
    conversion in every operation, so a batch converts once per dtype. Only
    values within the range of float32 or float64 are converted: NumPy 1.x
    widens the result for a Python float beyond the dtype's range, and
    PyTorch multiplies float16 by a float32 copy of the scalar. Operands of
    0-d arrays are never converted: NumPy 1.x computes ``v * m`` for a 0-d
    ``v`` in the promotion of ``v``'s dtype and ``m``'s type (float64 for a
    Python float; see :mod:`corrmom_ref._backends.scalars`), which a 0-d
    operand of ``v``'s dtype would change.
    """

    def __init__(self, xp: Any, lr: float, m: float) -> None:
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


def _corrected_pure(xp: Any, p: Array, g: Array, v: Array, lr: float, m: float) -> tuple[Array, Array]:
    v = _keep_dtype(xp, m * v - g, v)
    return _keep_dtype(xp, p + lr * v, p), v


def _uncorrected_pure(xp: Any, p: Array, g: Array, v: Array, lr: float, m: float) -> tuple[Array, Array]:
    v = _keep_dtype(xp, m * v - lr * g, v)
    return _keep_dtype(xp, p + v, p), v


_CORRECTED = _GenericStep(_corrected_in_place, _corrected_pure)
_UNCORRECTED = _GenericStep(_uncorrected_in_place, _uncorrected_pure)


def _keep_dtype(xp: Any, result: Array, like: Array) -> Array:
    """``result`` as an array of ``like``'s dtype.

    NumPy 1.x applies value-based casting to 0-d arrays, so ``0.9 * v`` for a
    0-d float16 ``v`` is a float64 *scalar*; the in-place path cannot change
    the dtype, this one must not either. A no-op when the dtype already matches.
    """
    if type(result) is type(like) and result.dtype == like.dtype:
        return result
    return xp.asarray(result, dtype=like.dtype)


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
    xp: Any, kernel: Kernel, p: Array, g: Array, v: Array, lr: float, m: float
) -> tuple[Array, Array]:
    """Apply ``kernel`` slice by slice of flat views (whole if the arrays have none)."""
    fp, fg, fv = (_flat_view(xp, a) for a in (p, g, v))
    if fp is None or fg is None or fv is None:
        return kernel(p, g, v, lr, m)
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
def _slices_are_views(xp: Any) -> bool:
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
