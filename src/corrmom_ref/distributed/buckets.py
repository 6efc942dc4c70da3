"""Flat buffers: many arrays of one backend, dtype and device packed into one.

A :class:`Bucket` remembers where each array sits in the flat vector, so one
collective call moves all of them instead of one call per parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any

from array_api_compat import device

from corrmom_ref._namespace import namespace_of

__all__ = ["Bucket", "group_into_buckets"]


@dataclass
class Bucket:
    """Arrays of one backend, dtype and device, and their place in a flat vector."""

    kind: tuple[Any, ...] = ()
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    members: list[Any] = field(default_factory=list)

    def pack(self, arrays: Sequence[Any], extra: Sequence[float] = (), out: Any = None) -> Any:
        """One flat vector: the arrays raveled in order, then the ``extra`` values.

        With ``out`` (a writable flat array of the right size, dtype and
        device, e.g. the previous step's buffer) the values are written into
        it and it is returned; else a new array is made.
        """
        xp = namespace_of(arrays[0])
        parts = [xp.reshape(a, (-1,)) for a in arrays]
        if out is not None and extra and type(out).__module__ == "numpy":  # NumPy converts the numbers itself
            out[out.shape[0] - len(extra) :] = extra
            extra = ()
        if extra:
            parts.append(xp.asarray(list(extra), dtype=arrays[0].dtype, device=device(arrays[0])))
        if out is None:
            return xp.concat(parts) if len(parts) > 1 else xp.asarray(parts[0], copy=True)
        offset = 0
        for part in parts:
            out[offset : offset + part.shape[0]] = part
            offset += part.shape[0]
        return out

    def key(self, extra: int = 0) -> tuple[Any, ...]:
        """What identifies this bucket's flat vector: backend, dtype, device, shapes, extras."""
        return (self.kind, tuple(self.shapes), extra)

    def unpack(self, flat: Any) -> list[Any]:
        """Views of ``flat`` with the arrays' shapes, in order (extra values left out)."""
        xp = namespace_of(flat)
        views, offset = [], 0
        for shape in self.shapes:
            size = prod(shape)
            views.append(xp.reshape(flat[offset : offset + size], shape))
            offset += size
        return views

    def extras(self, flat: Any) -> Any:
        """The values packed after the arrays."""
        return flat[sum(prod(s) for s in self.shapes) :]


def group_into_buckets(members: Iterable[Any], array_of: Any) -> list[Bucket]:
    """Group ``members`` by the backend, dtype and device of ``array_of(member)``.

    Buckets come in order of first appearance, members in their given order,
    so every rank with the same model builds the same buckets.
    """
    buckets: dict[tuple[Any, ...], Bucket] = {}
    for member in members:
        array = array_of(member)
        key = (type(array), array.dtype, device(array))  # all hashable
        bucket = buckets.setdefault(key, Bucket(kind=key))
        bucket.members.append(member)
        bucket.shapes.append(tuple(array.shape))
    return list(buckets.values())
