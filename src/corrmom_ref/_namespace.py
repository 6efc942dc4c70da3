"""The Array API namespace and the device of an array, with per-type parts looked up once.

``array_api_compat.array_namespace`` inspects its arguments on every call,
which costs microseconds; the namespace depends only on the array's type, so
the hot paths look it up by type.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from array_api_compat import (
    array_namespace,
    device,
    is_dask_array,
    is_jax_array,
    is_numpy_array,
    is_pydata_sparse_array,
)

_BY_TYPE: dict[type, Any] = {}
_DEVICE_READER_BY_TYPE: dict[type, Callable[[Any], Any]] = {}
_PLACEMENT_READER_BY_TYPE: dict[type, Callable[[Any], Any]] = {}


def namespace_of(x: Any) -> Any:
    """The Array API namespace of ``x`` (``TypeError`` if ``x`` is not an array)."""
    xp = _BY_TYPE.get(type(x))
    if xp is None:
        xp = array_namespace(x)
        _BY_TYPE[type(x)] = xp
    return xp


def device_of(x: Any) -> Any:
    """``array_api_compat.device(x)``, with its choice of how to read the device made once per type.

    The helper tests ``x`` against NumPy, Dask, JAX and sparse on every call
    (about a microsecond); for every other backend its answer is ``x.device``.
    """
    reader = _DEVICE_READER_BY_TYPE.get(type(x))
    if reader is None:
        reader = _DEVICE_READER_BY_TYPE[type(x)] = _device_reader(x)
    return reader(x)


def _device_reader(x: Any) -> Callable[[Any], Any]:
    if is_numpy_array(x):
        return _cpu
    if is_dask_array(x) or is_jax_array(x) or is_pydata_sparse_array(x):
        return device  # the helper's own special cases
    return attrgetter("device")


def _cpu(x: Any) -> str:
    return "cpu"


def placement_of(x: Any) -> Any:
    """A hashable for where ``x`` lives: arrays with equal placements are on the same device.

    The device itself, except on JAX, whose ``device`` is derived from the
    array's sharding on every read (about a microsecond); there it is the
    sharding (a tenth of that). Unequal placements may still share a device
    (two shardings of one device), so an equality test that must not fail
    falls back to :func:`device_of` (as :func:`same_device` does).
    """
    reader = _PLACEMENT_READER_BY_TYPE.get(type(x))
    if reader is None:
        reader = _PLACEMENT_READER_BY_TYPE[type(x)] = _placement_reader(x)
    return reader(x)


def same_device(a: Any, b: Any) -> bool:
    """Whether arrays ``a`` and ``b`` are on the same device."""
    return placement_of(a) == placement_of(b) or device_of(a) == device_of(b)


def _placement_reader(x: Any) -> Callable[[Any], Any]:
    if is_jax_array(x) and hasattr(x, "sharding"):
        return attrgetter("sharding")
    return _device_reader(x)
