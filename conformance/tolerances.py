r"""Every numerical tolerance of the suite, in one place.

A trajectory of ``n`` steps computed in a float dtype with machine epsilon
:math:`\epsilon` accumulates at most a few roundings per step on each of
``w`` and the momentum, so the error against the exact oracle is bounded by
:math:`c\,\epsilon\,(n+1)\,M`, where :math:`M` is the largest magnitude seen
in the oracle trajectory (parameters, momenta and ``lr * u``) and ``c`` a
small constant covering the operations per step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["OPS_PER_STEP", "SCALE_RTOL", "float16_master_atol", "trajectory_atol"]

#: Roundings per step (``v *= m``, ``v -= g``, ``lr * v``, ``w += ...``) with slack for
#: the correction form's division.
OPS_PER_STEP = 8

#: Relative tolerance on loss scales: ``2**(1/interval)`` products are not exact.
SCALE_RTOL = 1e-9


def trajectory_atol(dtype: np.dtype, steps: int, magnitude: float) -> float:
    """Absolute tolerance after ``steps`` steps in ``dtype`` at ``magnitude``."""
    eps = float(np.finfo(dtype).eps)
    return OPS_PER_STEP * eps * (steps + 1) * max(magnitude, 1.0)


def float16_master_atol(oracle_value: np.ndarray, steps: int, magnitude: float) -> np.ndarray:
    """float16 data of an fp32-master update: one float16 rounding of a float32 trajectory."""
    half_ulp = 0.5 * float(np.finfo(np.float16).eps) * np.abs(oracle_value.astype(np.float64))
    return half_ulp + trajectory_atol(np.dtype(np.float32), steps, magnitude) + float(
        np.finfo(np.float16).smallest_subnormal)
