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

Where the suite says *bitwise* the tolerance is zero and the comparison is
of bit patterns (:func:`bitwise_equal`): ``-0.0`` and ``+0.0`` differ.
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


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Elementwise: whether ``a`` and ``b`` hold the same bits (any two NaNs agree); ``None`` if dtype or shape differ."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return None
    if a.dtype.kind != "f":
        return np.asarray(a == b)
    unsigned = np.dtype(f"uint{8 * a.dtype.itemsize}")
    return np.asarray((a.view(unsigned) == b.view(unsigned)) | (np.isnan(a) & np.isnan(b)))


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bit patterns: same dtype, same shape, same bits element by element.

    ``-0.0`` and ``+0.0`` differ here (``np.array_equal`` calls them equal);
    a NaN equals any NaN (the suite never checks NaN payloads).
    """
    same = _same_bits(a, b)
    return same is not None and bool(np.all(same))


def first_bit_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """The flat index of the first element whose bits differ (see :func:`bitwise_equal`), or ``None``.

    ``0`` when the dtypes or shapes differ.
    """
    same = _same_bits(a, b)
    if same is None:
        return 0
    differ = np.flatnonzero(~same.reshape(-1))
    return int(differ[0]) if differ.size else None
