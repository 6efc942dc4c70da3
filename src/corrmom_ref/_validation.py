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

from corrmom_ref._namespace import alike, same_device

if TYPE_CHECKING:
    from corrmom_ref.link import Parameter

__all__ = [
    "check_gradient",
    "check_loss_scale",
    "check_loss_scaling_interval",
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


def check_loss_scale(value: Any, what: str, non_real: type[Exception] = TypeError) -> float:
    r"""Return the loss scale ``value`` as a Python float if it lies in the allowed range.

    A loss scale :math:`s` multiplies the loss before backward and divides
    every gradient after it. It must be a real number (not a bool) with
    :math:`2^{-126} \le s \le 2^{126}`
    (:data:`~corrmom_ref.loss_scaling.LOSS_SCALE_LOWER`,
    :data:`~corrmom_ref.loss_scaling.LOSS_SCALE_UPPER`): then :math:`s` and
    :math:`1/s` are both normal float32 numbers, so neither turns into 0 or
    infinity when a backend casts it to a float32 gradient's dtype. Zero,
    negative, NaN and infinite scales, ``1e-300`` and ``10**400`` are refused.

    Args:
        value: The scale.
        what: What it is, for the message (``"loss scale"``,
            ``"parameter /l1/W: loss_scale"``).
        non_real: The error raised for a value that is not a real number
            (``Optimizer.loss_scaling`` has always raised ``ValueError``).

    Raises:
        TypeError: not a real number (a string, an array, a bool), unless
            ``non_real`` says otherwise.
        ValueError: outside the range.
    """
    from corrmom_ref.loss_scaling import LOSS_SCALE_LOWER, LOSS_SCALE_UPPER

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise non_real(f"{what} must be a real number, got {value!r} ({type(value).__name__})")
    as_float = _as_float(value)
    if not LOSS_SCALE_LOWER <= as_float <= LOSS_SCALE_UPPER:  # NaN fails too
        raise ValueError(
            f"{what} must be a positive finite number in [2**-126, 2**126] (so that it and its "
            f"reciprocal are normal float32 numbers), got {describe(value)} ({type(value).__name__})"
        )
    return as_float


#: The largest loss-scaling interval: what a snapshot stores it as (int64).
INTERVAL_MAX = 2**63 - 1


def check_loss_scaling_interval(value: Any) -> int:
    r"""Return the dynamic loss-scaling ``interval`` as a Python int if it is in ``[1, 2**63 - 1]``.

    The upper bound is what a snapshot can store (int64); a larger interval
    would also make the growth factor :math:`2^{1/\mathrm{interval}}`
    overflow the conversion to float.

    Raises:
        ValueError: not an integer (a bool or a float included), or out of range.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 1 <= int(value) <= INTERVAL_MAX
    ):
        raise ValueError(
            f"interval must be an integer in [1, 2**63 - 1], got {describe(value)} ({type(value).__name__})"
        )
    return int(value)


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
        from corrmom_ref.serializers.transfer import dtype_name

        known = dtype_name(dtype).startswith(("int", "uint", "bool"))
        with contextlib.suppress(TypeError):
            _INTEGRAL_OR_BOOL[key] = known
    return known


def check_parameter_dtype(param: Parameter, path: str, rule_name: str) -> None:
    r"""Raise ``TypeError`` if ``param.array`` holds integers or booleans.

    A momentum rule computes :math:`v \leftarrow m v - g`,
    :math:`w \leftarrow w + \eta v` with real :math:`m, \eta`: on an
    integer or boolean array there is no right answer (NumPy refuses the cast,
    Chainer 7.8.1 raises NumPy's ``UFuncTypeError`` after earlier parameters
    have moved). Such a parameter can be kept fixed by disabling its rule.
    """
    dtype = param.array.dtype
    if _integral_or_bool(dtype):
        from corrmom_ref.serializers.transfer import dtype_name

        raise TypeError(
            f"parameter {path} has dtype {dtype_name(dtype)}: {rule_name} updates floating-point "
            f"parameters only; give it a floating-point array, or keep it fixed with "
            f"param.update_rule.enabled = False"
        )


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
