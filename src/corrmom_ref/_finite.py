r"""Whether gradients are finite, asked with a few array operations however many there are.

Dynamic loss scaling checks every gradient before each step. Asking each
gradient on its own costs a few array operations per gradient, which on many
small gradients outweighs the step itself; the chunks below need a few
operations per chunk instead (the timings behind this choice:
``benchmarks/RESULTS.md``, "Measurements behind the machinery's design
choices"). Consecutive gradients of one array type, dtype and device are
concatenated into chunks of at most :data:`CHUNK_ELEMENTS` elements (a larger
gradient is cut into slices of that size) and each chunk is reduced to one
flag:

.. math::

    \operatorname{finite}(x) = \operatorname{isfinite}\bigl(\max_i x_i\bigr)
    \wedge \operatorname{isfinite}\bigl(\min_i x_i\bigr)

for real dtypes: the standard's ``max`` and ``min`` propagate NaN, and an
infinite element makes one of them infinite. Two reductions allocate no
temporary as large as the chunk (``isfinite(x)`` would: on NumPy its fresh
pages cost more than the arithmetic). Complex chunks use ``all(isfinite(x))``
(the standard orders no complex numbers). The flags are stacked and read
once, so a lazy backend (Dask) computes once. Nothing here warns: no
operation makes a NaN out of numbers.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from typing import Any

from array_api_compat import array_namespace

from corrmom_ref._namespace import namespace_of, placement_of

__all__ = ["CHUNK_ELEMENTS", "all_finite", "finite_flags"]

#: Elements per concatenated chunk: its copy takes 1 MiB in float32.
CHUNK_ELEMENTS = 1 << 18


def all_finite(grads: list[Any]) -> bool:
    """Whether every element of every gradient is finite."""
    return _read_all(_chunk_flags(grads))


def finite_flags(grads: list[Any]) -> list[bool]:
    """``[bool(all(isfinite(g))) for g in grads]``.

    All gradients are asked together first; only when one of them is not
    finite is each asked on its own (still read in one transfer where the
    flags can be stacked).
    """
    if not grads:
        return []
    if all_finite(grads):
        return [True] * len(grads)
    return [_read_all(_chunk_flags([g])) for g in grads]


def _chunk_flags(grads: list[Any]) -> list[Any]:
    """One 0-d boolean array per chunk of ``grads``: whether the chunk is finite."""
    return [_finite(namespace_of(chunk[0]), chunk) for chunk in _chunks(grads)]


def _chunks(grads: list[Any]) -> Iterator[list[Any]]:
    """Consecutive gradients of one kind, at most :data:`CHUNK_ELEMENTS` elements per chunk.

    Gradients that hold no floating-point numbers (or none at all) are always
    finite and left out; a gradient larger than a chunk is cut into flat slices.
    """
    chunk: list[Any] = []
    chunk_kind: Hashable = None
    filled = 0
    for g in grads:
        xp = namespace_of(g)
        size = math.prod(g.shape)
        if size == 0 or _float_kind(xp, g.dtype) is None:
            continue
        kind = (type(g), g.dtype, placement_of(g))
        if chunk and (kind != chunk_kind or filled + size > CHUNK_ELEMENTS):
            yield chunk
            chunk, filled = [], 0
        if size > CHUNK_ELEMENTS:
            flat = xp.reshape(g, (-1,))
            for start in range(0, size, CHUNK_ELEMENTS):
                yield [flat[start : min(start + CHUNK_ELEMENTS, size)]]  # the standard asks in-bounds stops
            continue
        chunk.append(g)
        chunk_kind = kind
        filled += size
    if chunk:
        yield chunk


#: ``(type of the dtype, dtype) -> "real" | "complex" | None``: keyed with the
#: dtype's type so that dtypes of two libraries are never compared.
_FLOAT_KIND: dict[Hashable, str | None] = {}


def _float_kind(xp: Any, dtype: Any) -> str | None:
    """``"real"`` or ``"complex"`` for a floating-point dtype, else ``None`` (asked once per dtype)."""
    key = (type(dtype), dtype)
    try:
        return _FLOAT_KIND[key]
    except KeyError:
        kind = _FLOAT_KIND[key] = _ask_float_kind(xp, dtype)
        return kind
    except TypeError:  # a dtype that cannot be hashed
        return _ask_float_kind(xp, dtype)


def _ask_float_kind(xp: Any, dtype: Any) -> str | None:
    if xp.isdtype(dtype, "real floating"):
        return "real"
    return "complex" if xp.isdtype(dtype, "complex floating") else None


def _finite(xp: Any, chunk: list[Any]) -> Any:
    flat = chunk[0] if len(chunk) == 1 else xp.concat(chunk, axis=None)
    if _float_kind(xp, flat.dtype) == "complex":
        return xp.all(xp.isfinite(flat))
    return xp.logical_and(xp.isfinite(xp.max(flat)), xp.isfinite(xp.min(flat)))


def _read_all(flags: list[Any]) -> bool:
    """Whether every flag is true, read in one transfer when the flags can be stacked."""
    if not flags:
        return True
    try:
        xp = array_namespace(*flags)
        return bool(xp.all(xp.stack(flags)))
    except (TypeError, ValueError, RuntimeError):  # flags on different devices or backends
        return all(bool(flag) for flag in flags)
