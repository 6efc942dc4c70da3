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
from collections.abc import Callable
from functools import cache
from typing import Any

from array_api_compat import is_numpy_array, is_writeable_array

from corrmom_ref._backends.fast import corrected_kernel, corrected_multi_kernel

__all__ = [
    "BLOCK_ELEMENTS",
    "corrected_momentum_step",
    "corrected_momentum_steps",
    "momentum_step",
    "momentum_steps",
]

#: Elements per block of the in-place passes: 64 Ki elements keeps the three
#: float32 operand slices and the temporary within a typical 1 MiB L2 cache.
BLOCK_ELEMENTS = 1 << 16

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
    if _can_update_in_place(p, v):
        return _run_blocked(xp, _corrected_in_place, p, g, v, lr, m)
    v = _keep_dtype(xp, m * v - g, v)
    return _keep_dtype(xp, p + lr * v, p), v


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
    return _each(corrected_momentum_step, xp, ps, gs, vs, lr, m)


def momentum_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: float, m: float
) -> tuple[list[Array], list[Array]]:
    """``momentum_step`` on each ``(p, g, v)``; returns the new ``(ps, vs)``."""
    return _each(momentum_step, xp, ps, gs, vs, lr, m)


def _each(
    step: Callable[..., tuple[Array, Array]],
    xp: Any,
    ps: list[Array],
    gs: list[Array],
    vs: list[Array],
    lr: float,
    m: float,
) -> tuple[list[Array], list[Array]]:
    new_ps, new_vs = [], []
    for p, g, v in zip(ps, gs, vs, strict=True):
        p, v = step(xp, p, g, v, lr, m)
        new_ps.append(p)
        new_vs.append(v)
    return new_ps, new_vs


def momentum_step(xp: Any, p: Array, g: Array, v: Array, lr: float, m: float) -> tuple[Array, Array]:
    r"""One uncorrected momentum step (Chainer's ``MomentumSGD``); returns ``(p, v)``.

    .. math::

        v_{t+1} = m\,v_t - \eta_{t+1}\,g_t, \qquad p_{t+1} = p_t + v_{t+1}

    which is Goyal et al.'s eq. (10) with the sign of ``v`` flipped.
    """
    if _can_update_in_place(p, v):
        return _run_blocked(xp, _uncorrected_in_place, p, g, v, lr, m)
    v = _keep_dtype(xp, m * v - lr * g, v)
    return _keep_dtype(xp, p + v, p), v


def _keep_dtype(xp: Any, result: Array, like: Array) -> Array:
    """``result`` as an array of ``like``'s dtype.

    NumPy 1.x applies value-based casting to 0-d arrays, so ``0.9 * v`` for a
    0-d float16 ``v`` is a float64 *scalar*; the in-place path cannot change
    the dtype, this one must not either. A no-op when the dtype already matches.
    """
    if type(result) is type(like) and result.dtype == like.dtype:
        return result
    return xp.asarray(result, dtype=like.dtype)


def _can_update_in_place(p: Array, v: Array) -> bool:
    return _is_writeable(p) and _is_writeable(v)


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
    """Apply ``kernel`` slice by slice of flat views when the backend has views, else whole."""
    if math.prod(p.shape) <= BLOCK_ELEMENTS or not _slices_are_views(xp):
        return kernel(p, g, v, lr, m)
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
