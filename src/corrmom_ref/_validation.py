"""Checks that run before an update or a load modifies anything.

Each raises an error whose message names the culprit (the parameter's path,
the hyperparameter, the snapshot key), so that a failed call can be fixed
without a debugger; none of them modifies its arguments.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace, device

from corrmom_ref._namespace import dtype_name, quick_alike, same_device

if TYPE_CHECKING:
    from corrmom_ref.link import Parameter

__all__ = [
    "check_gradient",
    "check_nonnegative_finite",
    "check_parameter_dtype",
    "describe",
]


def describe(value: Any) -> str:
    """``repr(value)``, shortened for integers too large for a float (``10**400`` has 401 digits)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        digits = str(abs(int(value)))
        if len(digits) > 20:
            sign = "-" if value < 0 else ""
            return f"{sign}{digits[:6]}...: an integer of {len(digits)} digits"
    return repr(value)


def _as_float(value: Any) -> float:
    """``float(value)``; an integer too large for a float gives ``inf`` of its sign (no ``OverflowError``)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_nonnegative_finite(name: str, value: Any, where: str) -> float:
    """Return ``value`` as a Python float if it is a finite real number >= 0.

    Hyperparameters are kept as Python floats at the point of use: a NumPy
    scalar would upcast float16/float32 arrays under NumPy 2's promotion rules.
    """
    if type(value) is float:  # the common case, without the ABC check below
        if math.isfinite(value) and value >= 0:
            return value
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: hyperparameter {name!r} must be a real number, got {value!r}")
    as_float = _as_float(value)  # 10**400 is refused below, not with an OverflowError
    if not math.isfinite(as_float) or as_float < 0:
        raise ValueError(f"{where}: hyperparameter {name!r} must be finite and >= 0, got {describe(value)}")
    return as_float


#: How the reference keeps a parameter fixed (the last clause of :func:`check_parameter_dtype`'s message).
_KEEP_FIXED_BY_RULE = "keep it fixed with param.update_rule.enabled = False"

#: Per dtype: whether it is an integer or boolean dtype (read once per parameter and step).
_INTEGRAL_OR_BOOL: dict[tuple[type, Any], bool] = {}


def _integral_or_bool(dtype: Any) -> bool:
    """Whether ``dtype`` is an integer or boolean dtype, on any backend (by name)."""
    key = (type(dtype), dtype)  # the type first: dtypes of two libraries are never compared
    try:
        known = _INTEGRAL_OR_BOOL.get(key)
    except TypeError:  # a backend whose dtypes cannot be hashed
        known = None
    if known is None:
        known = dtype_name(dtype).startswith(("int", "uint", "bool"))
        with contextlib.suppress(TypeError):
            _INTEGRAL_OR_BOOL[key] = known
    return known


def check_parameter_dtype(
    param: Parameter, path: str, rule_name: str, *, keep_fixed: str = _KEEP_FIXED_BY_RULE
) -> None:
    r"""Raise ``TypeError`` if ``param.array`` holds integers or booleans.

    A momentum rule computes :math:`v \leftarrow m v - g`,
    :math:`w \leftarrow w + \eta v` with real :math:`m, \eta`: on an
    integer or boolean array there is no right answer (NumPy refuses the cast,
    Chainer 7.8.1 raises NumPy's ``UFuncTypeError`` after earlier parameters
    have moved). Such a parameter can be kept fixed by disabling its rule;
    ``keep_fixed`` is the message's last clause, saying how (a port passes its own way).
    """
    dtype = param.array.dtype
    if _integral_or_bool(dtype):
        raise TypeError(
            f"parameter {path} has dtype {dtype_name(dtype)}: {rule_name} updates floating-point "
            f"parameters only; give it a floating-point array, or {keep_fixed}"
        )


def check_gradient(param: Parameter, path: str) -> None:
    """Raise unless ``param.grad`` is ``None`` or matches ``param.array``.

    Matching means: same array namespace (backend), shape, dtype and device.
    """
    grad = param.grad
    if grad is None:
        return
    array = param.array
    if type(grad) is type(array) and quick_alike(grad, array):  # the common case, answered quickly
        return
    if type(grad) is not type(array):
        try:
            same_backend = array_namespace(grad) is array_namespace(array)
        except TypeError:
            same_backend = False
        if not same_backend:
            raise TypeError(
                f"gradient of parameter {path} is a {type(grad).__module__}.{type(grad).__name__}, "
                f"but the parameter is a {type(array).__module__}.{type(array).__name__}"
            )
    if grad.shape != array.shape and tuple(grad.shape) != tuple(array.shape):
        raise ValueError(
            f"gradient of parameter {path} has shape {tuple(grad.shape)}, expected {tuple(array.shape)}"
        )
    if grad.dtype != array.dtype:
        raise TypeError(f"gradient of parameter {path} has dtype {grad.dtype}, expected {array.dtype}")
    if not same_device(grad, array):
        raise ValueError(
            f"gradient of parameter {path} is on device {device(grad)}, "
            f"but the parameter is on {device(array)}"
        )
