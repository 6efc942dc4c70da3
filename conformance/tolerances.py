r"""Every numerical tolerance of the suite, in one place.

An implementation computes in its parameter dtype with unit roundoff
:math:`\epsilon`; the oracle computes in float64 (or exactly). Each step adds
at most a few roundings of the quantities it touches, and momentum carries
earlier errors forward, so after :math:`t` steps the error of a trajectory
value is bounded by

.. math:: |x - \hat x| \le C\,\epsilon\,t\,(|\hat x| + R)

where :math:`R` is the largest magnitude the run produced (parameters, the
momentum buffer and :math:`\eta u`), and :math:`C = 8` covers the handful of
roundings per step with room to spare. Bugs the suite exists to catch change
values by :math:`\eta g` or more in one step, orders of magnitude above this.
"""

from __future__ import annotations

import numpy as np

#: Safety factor C of the bound above.
ROUNDINGS_PER_STEP = 8.0

#: Relative tolerance between loss scales (Chainer multiplies by
#: :math:`2^{1/\mathrm{interval}}` each clean step; an implementation may round differently).
LOSS_SCALE_RTOL = 1e-9


def unit_roundoff(dtype: np.dtype | type) -> float:
    """Half the machine epsilon of ``dtype``."""
    return float(np.finfo(dtype).eps) / 2


def trajectory_atol(dtype: np.dtype | type, steps: int, magnitude: float) -> float:
    """Absolute tolerance after ``steps`` steps for values up to ``magnitude``."""
    return ROUNDINGS_PER_STEP * unit_roundoff(dtype) * max(steps, 1) * (magnitude + 1.0)


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    """Raise ``AssertionError`` naming ``what`` and the worst element if not within ``atol``."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    diff = np.abs(actual - expected)
    if not np.all(diff <= atol):
        worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
        raise AssertionError(
            f"{what}: differs by {diff[worst]:.3g} > tolerance {atol:.3g} at index {worst} "
            f"(got {actual[worst]!r}, expected {expected[worst]!r})"
        )
