"""Checking and converting values read from a snapshot."""

from __future__ import annotations

import numbers
from typing import Any

from array_api_compat import array_namespace, device

from corrmom_ref._namespace import dtype_name  # re-exported: it was defined here first
from corrmom_ref._scalar_checks import check_flag

__all__ = [
    "check_loaded",
    "convert_like",
    "convert_loaded",
    "dtype_name",
    "key_name",
    "read_loaded",
    "to_flag",
    "to_float",
    "to_int",
]


def check_loaded(value: Any, *, shape: tuple[int, ...], dtypes: tuple[Any, ...], what: str) -> None:
    """The rule every loader holds a loaded array to: exactly ``shape``, and one of ``dtypes``
    (compared by name, so no cast is ever needed: a value of another width, an integer, a
    string or a date where a float is expected is refused, never reinterpreted).

    Checked from a :class:`~corrmom_ref.serializers._archive.StoredArray`'s header, before
    any of its data is read.

    Raises:
        ValueError: the shape differs (the message names ``what``).
        TypeError: the dtype differs, or the value is not an array.
    """
    value_shape = getattr(value, "shape", None)
    if value_shape is None:
        raise TypeError(f"{what}: expected an array, got {type(value).__name__}")
    key = f" (snapshot key {value.key!r})" if _is_stored(value) and repr(value.key) not in what else ""
    if tuple(value_shape) != tuple(shape):
        raise ValueError(f"{what}: snapshot has shape {tuple(value_shape)}, expected {tuple(shape)}{key}")
    names = [dtype_name(d) for d in dtypes]
    if dtype_name(value.dtype) not in names:
        raise TypeError(
            f"{what}: snapshot has dtype {dtype_name(value.dtype)}, expected {' or '.join(names)}{key}"
        )


def read_loaded(value: Any, *, shape: tuple[int, ...], dtypes: tuple[Any, ...], what: str) -> Any:
    """:func:`check_loaded`, then the value as a NumPy array (a stored one read, only now)."""
    import numpy as np

    check_loaded(value, shape=shape, dtypes=dtypes, what=what)
    return value.read() if _is_stored(value) else np.array(value, copy=True)


def convert_loaded(value: Any, *, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any, what: str) -> Any:
    """Check a loaded array against ``shape`` and ``dtype``; return it on ``xp`` and ``device``.

    A :class:`~corrmom_ref.serializers._archive.StoredArray` (an npz member
    not read yet) is checked by its header and read only when it fits; the
    array read is new, so it is placed without another copy.

    Raises:
        ValueError: the shape differs (the message names ``what``).
        TypeError: the dtype differs, or the value is not an array.
    """
    check_loaded(value, shape=shape, dtypes=(dtype,), what=what)
    if _is_stored(value):
        return xp.asarray(value.read(), dtype=dtype, device=device, copy=None)
    return xp.asarray(value, dtype=dtype, device=device, copy=True)


def convert_like(value: Any, like: Any, what: str) -> Any:
    """:func:`convert_loaded` with the shape, dtype, backend and device of ``like``."""
    return convert_loaded(
        value,
        xp=array_namespace(like),
        shape=tuple(like.shape),
        dtype=like.dtype,
        device=device(like),
        what=what,
    )


def _scalar(value: Any, what: str) -> Any:
    shape = getattr(value, "shape", ())
    if tuple(shape) != ():
        raise ValueError(f"{what}: expected a scalar, got an array of shape {tuple(shape)}")
    if _is_stored(value):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{what}: expected a bool or a real number, got a {value.dtype} value")
        value = value.read()
    return value.item() if hasattr(value, "item") else value


def _is_stored(value: Any) -> bool:
    """Whether ``value`` is an npz member not read yet (imported here: the archive reader
    needs NumPy, which ``import corrmom_ref`` does not import)."""
    from corrmom_ref.serializers._archive import StoredArray

    return isinstance(value, StoredArray)


def key_name(serializer: Any, key: str) -> str:
    """``key`` with the serializer's path prefix (the full snapshot key), quoted."""
    return repr(getattr(serializer, "path", "") + key)


def to_flag(value: Any, where: str) -> bool:
    """A loaded flag; only a bool (NumPy's or Python's) is one."""
    return check_flag(_scalar(value, where), where)


def to_int(value: Any, where: str) -> int:
    """A loaded integer counter (``t``, ``epoch``) as a Python int."""
    scalar = _scalar(value, where)
    if isinstance(scalar, bool) or not isinstance(scalar, numbers.Integral):
        raise TypeError(f"{where}: expected an integer, got {scalar!r}")
    return int(scalar)


def to_float(value: Any, where: str) -> float:
    """A loaded real number as a Python float."""
    scalar = _scalar(value, where)
    if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
        raise TypeError(f"{where}: expected a real number, got {scalar!r}")
    return float(scalar)
