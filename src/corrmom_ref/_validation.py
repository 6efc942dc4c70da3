"""Checks that run before an update or a load modifies anything.

Each raises an error whose message names the culprit (the parameter's path,
the hyperparameter, the snapshot key), so that a failed call can be fixed
without a debugger; none of them modifies its arguments.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace, device

from corrmom_ref._namespace import alike, same_device

if TYPE_CHECKING:
    from corrmom_ref.link import Parameter

__all__ = ["check_gradient", "check_nonnegative_finite"]


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
    as_float = float(value)
    if not math.isfinite(as_float) or as_float < 0:
        raise ValueError(f"{where}: hyperparameter {name!r} must be finite and >= 0, got {value!r}")
    return as_float


def check_gradient(param: Parameter, path: str) -> None:
    """Raise unless ``param.grad`` is ``None`` or matches ``param.array``.

    Matching means: same array namespace (backend), shape, dtype and device.
    """
    grad = param.grad
    if grad is None:
        return
    array = param.array
    if type(grad) is type(array) and alike(grad, array):  # the common case, answered quickly
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
