"""The Array API namespace, the device and the dtype name of an array, with per-type parts looked up once.

``array_api_compat.array_namespace`` inspects its arguments on every call;
the namespace depends only on the array's type, so the hot paths look it up
by type (what that saves per call: ``benchmarks/RESULTS.md``, "Measurements
behind the machinery's design choices").
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
    is_torch_array,
)

__all__ = [
    "device_of",
    "dtype_name",
    "is_float16",
    "namespace_of",
    "placement_of",
    "quick_alike",
    "quick_alike_test",
    "same_device",
]

_BY_TYPE: dict[type, Any] = {}
_DEVICE_READER_BY_TYPE: dict[type, Callable[[Any], Any]] = {}
_PLACEMENT_READER_BY_TYPE: dict[type, Callable[[Any], Any]] = {}
_ALIKE_TEST_BY_TYPE: dict[type, Callable[[Any, Any], bool]] = {}


def namespace_of(x: Any) -> Any:
    """The Array API namespace of ``x`` (``TypeError`` if ``x`` is not an array)."""
    xp = _BY_TYPE.get(type(x))
    if xp is None:
        xp = array_namespace(x)
        _BY_TYPE[type(x)] = xp
    return xp


def device_of(x: Any) -> Any:
    """``array_api_compat.device(x)``, with its choice of how to read the device made once per type.

    The helper tests ``x`` against NumPy, Dask, JAX and sparse on every call;
    for every other backend its answer is ``x.device``.
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
    array's sharding on every read; there it is the sharding, which is read
    as it is (``benchmarks/RESULTS.md`` has both costs). Unequal placements may still share a device
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


def quick_alike(a: Any, b: Any) -> bool:
    """A quick test that arrays ``a`` and ``b`` (of one type) have equal shape, dtype and device.

    ``True`` is always right; ``False`` may be wrong (a JAX array's ``aval``
    also holds its weak type, devices are compared through placements), so a
    caller that must be exact looks closer after a ``False``. The test is
    chosen once per array type: NumPy arrays are all on the CPU; a PyTorch
    tensor says whether it is on the CPU without building a device object;
    a JAX array's ``aval`` (one read) holds both shape and dtype, which read
    one by one are built anew each time.
    """
    return quick_alike_test(a)(a, b)


def quick_alike_test(x: Any) -> Callable[[Any, Any], bool]:
    """:func:`quick_alike` for arrays of ``x``'s type, as a function of two arrays of that type.

    For a loop over many arrays of one type, which can then look the test up once.
    """
    test = _ALIKE_TEST_BY_TYPE.get(type(x))
    if test is None:
        test = _ALIKE_TEST_BY_TYPE[type(x)] = _alike_test(x)
    return test


def _alike_test(x: Any) -> Callable[[Any, Any], bool]:
    if is_numpy_array(x):
        return _same_shape_and_dtype
    if is_torch_array(x):
        return _alike_tensors
    if is_jax_array(x) and hasattr(x, "aval"):
        return _alike_jax_arrays
    return _alike_arrays


def _same_shape_and_dtype(a: Any, b: Any) -> bool:
    return bool(a.dtype == b.dtype and a.shape == b.shape)


def _alike_tensors(a: Any, b: Any) -> bool:
    return bool(
        a.dtype == b.dtype and a.shape == b.shape and ((a.is_cpu and b.is_cpu) or a.device == b.device)
    )


def _alike_jax_arrays(a: Any, b: Any) -> bool:
    return bool(a.aval == b.aval and same_device(a, b))


def _alike_arrays(a: Any, b: Any) -> bool:
    return bool(a.dtype == b.dtype and a.shape == b.shape and same_device(a, b))


def dtype_name(dtype: Any) -> str:
    """A backend-neutral name for a dtype: ``'float32'`` for every backend's float32.

    NumPy and JAX spell dtypes in their namespaces as scalar types
    (``numpy.float32`` is a class whose ``str`` is ``"<class 'numpy.float32'>"``);
    their ``__name__`` is the name. PyTorch's ``str`` is ``'torch.float32'``:
    the part after the last dot is the name.
    """
    if isinstance(dtype, type):
        return dtype.__name__
    return str(dtype).rsplit(".", 1)[-1]


def is_float16(dtype: Any) -> bool:
    """Whether ``dtype`` is float16, on any backend.

    Compared by name: float16 is not a standard dtype, so namespaces such as
    array-api-strict's and array-api-compat's Dask wrapper have no
    ``float16`` attribute to compare with.
    """
    return dtype_name(dtype) == "float16"
