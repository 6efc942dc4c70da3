"""The one input check every native fast path starts from: alike, and not aliased.

A native kernel reads ``p``, ``g`` and ``v`` and writes ``p`` and ``v`` in
one pass (or, on JAX, may donate their buffers), so it computes the
reference step only for triples it can treat as independent arrays of one
kind. :func:`alike_and_separate` states that once for all kernels; each
kernel's ``accepts`` adds only what its backend needs on top (dtypes it
compiles for, contiguity, ``m != 0``, ...). Whatever is declined takes the
generic step, which is the reference's arithmetic and so right for any input.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

__all__ = ["alike_and_separate", "all_distinct"]

_dtype_of = attrgetter("dtype")
_shape_of = attrgetter("shape")
_aval_of = attrgetter("aval")


def alike_and_separate(ps: list[Any], gs: list[Any], vs: list[Any], *, exact_type: bool = False) -> bool:
    """Whether the lists (not empty) can be stepped by one native call.

    True when every array comes from the library of ``ps[0]`` (a subclass
    such as ``torch.nn.Parameter`` included; with ``exact_type``, every
    array is of ``ps[0]``'s very type) and has its dtype, the three
    arrays of each triple have one shape, no array object appears twice
    anywhere in the lists (so neither ``p is v`` nor ``g is v`` nor a parameter
    tied to another), and no two arrays of a triple are views that may share
    memory (NumPy, CuPy, PyTorch; JAX has no views; any other type is assumed
    to share). Asked of whole lists with C-level iteration (``map``,
    ``list.count``), as it runs on every step.
    """
    first = ps[0]
    arrays = [*ps, *gs, *vs]
    count = len(arrays)
    if list(map(type, arrays)).count(type(first)) != count and (
        exact_type or len(set(map(_library, set(map(type, arrays))))) != 1
    ):
        return False
    if not _alike(ps, gs, vs, arrays, first):
        return False
    if not all_distinct(arrays):
        return False
    return not _views_overlap(ps, gs, vs, arrays)


def all_distinct(arrays: list[Any]) -> bool:
    """Whether no array object appears twice in ``arrays`` (by identity, one C-level pass)."""
    return len(set(map(id, arrays))) == len(arrays)


def _alike(ps: list[Any], gs: list[Any], vs: list[Any], arrays: list[Any], first: Any) -> bool:
    """One dtype everywhere, one shape per triple (arrays of ``first``'s type)."""
    if hasattr(first, "aval"):  # JAX: an aval (shape, dtype, weak type) is read without building anything
        avals = list(map(_aval_of, ps))
        if avals == list(map(_aval_of, gs)) == list(map(_aval_of, vs)):
            return len({aval.dtype for aval in set(avals)}) == 1
    if list(map(_dtype_of, arrays)).count(first.dtype) != len(arrays):
        return False
    return list(map(_shape_of, ps)) == list(map(_shape_of, gs)) == list(map(_shape_of, vs))


def _library(kind: type) -> str:
    """The top-level module an array type comes from (``numpy``, ``torch``, ``jaxlib``, ...)."""
    return kind.__module__.split(".", 1)[0]


def _views_overlap(ps: list[Any], gs: list[Any], vs: list[Any], arrays: list[Any]) -> bool:
    """Whether two arrays of one triple are views that may share memory."""
    module = type(ps[0]).__module__.split(".", 1)[0]
    if module in _IMMUTABLE:
        return False
    memory = _MEMORY.get(module)
    if memory is None:  # an array type this module does not know: assume it may
        return True
    owner_of, may_share = memory
    if all(map(is_, map(owner_of, arrays), repeat(None))):  # every array owns its memory
        return False
    return any(
        may_share(p, g) or may_share(g, v) or may_share(p, v) for p, g, v in zip(ps, gs, vs, strict=True)
    )


def _numpy_may_share(a: Any, b: Any) -> bool:
    import numpy

    return bool(numpy.may_share_memory(a, b))


def _cupy_may_share(a: Any, b: Any) -> bool:
    import cupy

    return bool(cupy.may_share_memory(a, b))


def _torch_may_share(a: Any, b: Any) -> bool:
    # one storage: conservatively "may share" (a bounds test is not worth it here)
    return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


#: Array modules whose arrays are immutable (no views to alias).
_IMMUTABLE = frozenset({"jax", "jaxlib"})

#: Per array module: (the attribute that names a view's owner, a may-share-memory test).
_MEMORY: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], bool]]] = {
    "numpy": (attrgetter("base"), _numpy_may_share),
    "cupy": (attrgetter("base"), _cupy_may_share),
    "torch": (attrgetter("_base"), _torch_may_share),
}
