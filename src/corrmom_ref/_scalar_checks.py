r"""Ranges of the scalars an optimizer keeps (counters, loss-scaling state).

Used where a value enters from outside: a snapshot being loaded (the
``name`` is then the snapshot key) or, for the loss scale, the API. Each
check returns the value as a plain Python ``int``, ``float`` or ``bool`` and
raises an error naming ``name`` otherwise; ``bool`` is never taken for a
number (``t = True`` is refused).

Counters (``t``, ``epoch``, a rule's ``t``, the growth ``interval``) are
stored as int64 in an npz snapshot, so their range is
:math:`0 \le n \le 2^{63}-1` (:data:`COUNTER_MAX`); an int64 is what Chainer
writes for a Python ``int`` too.

The loss scale :math:`s` multiplies the loss before backward and divides every
gradient after it. Its range is :math:`2^{-126} \le s \le 2^{126}`
(:data:`ACCEPTED_LOSS_SCALE_MIN`, :data:`ACCEPTED_LOSS_SCALE_MAX`): then :math:`s` and
:math:`1/s` are both normal float32 numbers, so neither the scaling of a
float32 loss nor the unscaling of float32 gradients overflows to infinity or
flushes to zero because of the scale alone. This keeps every scale the
optimizer itself produces (dynamic scaling stays in :math:`[1, 65504]`) and
any static scale with a meaning, and refuses ``inf``, ``nan``, ``0``,
negative scales and ``1e-300`` (whose reciprocal is infinite in float32).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "ACCEPTED_LOSS_SCALE_MAX",
    "ACCEPTED_LOSS_SCALE_MIN",
    "COUNTER_MAX",
    "check_counter",
    "check_flag",
    "check_interval",
    "check_loss_scale",
]

#: The largest counter a snapshot stores (int64's maximum).
COUNTER_MAX = 2**63 - 1
#: The smallest loss scale accepted (given or loaded; the dynamic clamp, ``loss_scaling.LOSS_SCALE_MIN``, is narrower): the smallest normal float32, :math:`2^{-126}`.
ACCEPTED_LOSS_SCALE_MIN = 2.0**-126
#: The largest loss scale accepted, :math:`2^{126}` (its reciprocal is a normal float32).
ACCEPTED_LOSS_SCALE_MAX = 2.0**126


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def check_counter(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[0, COUNTER_MAX]``."""
    count = _integer(value, name)
    if not 0 <= count <= COUNTER_MAX:
        raise ValueError(f"{name}: must be an integer in [0, 2**63 - 1], got {count}")
    return count


def check_interval(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[1, COUNTER_MAX]``."""
    interval = _integer(value, name)
    if not 1 <= interval <= COUNTER_MAX:
        raise ValueError(f"{name}: must be an integer in [1, 2**63 - 1], got {interval}")
    return interval


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a ``bool`` if it is one (a NumPy bool counts; ``1`` and ``"no"`` do not)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"{name}: expected a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_loss_scale(value: Any, name: str) -> float:
    """``value`` as a ``float`` if it is a real number (not a bool) in
    ``[ACCEPTED_LOSS_SCALE_MIN, ACCEPTED_LOSS_SCALE_MAX]`` (finite, so not ``nan``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r} ({type(value).__name__})")
    try:
        scale = float(value)
    except OverflowError:
        scale = math.inf
    if not (math.isfinite(scale) and ACCEPTED_LOSS_SCALE_MIN <= scale <= ACCEPTED_LOSS_SCALE_MAX):
        raise ValueError(f"{name}: a loss scale must be finite and in [2**-126, 2**126], got {value!r}")
    return scale
