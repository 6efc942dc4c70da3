"""The suite's oracle helpers that the unit tests share: the exact model's shapes and the rounding bound."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from corrmom_conformance import oracle


def test_exact_keeps_the_shape_and_the_trajectory_takes_any_shape():
    p0 = np.array([[1.0, -2.0], [0.5, 0.25]])
    g = np.array([[1.0, 0.5], [-1.0, 2.0]])
    assert oracle.exact(p0).shape == (2, 2)
    flat = oracle.momentum_trajectory(
        oracle.exact(p0.ravel()), [oracle.exact(g.ravel())], [Fraction(1, 2)], [Fraction(0)], True
    )
    shaped = oracle.momentum_trajectory(
        oracle.exact(p0), [oracle.exact(g)], [Fraction(1, 2)], [Fraction(0)], True
    )
    assert flat.params == shaped.params
    # v = -g, w = p0 + lr v
    assert shaped.params[1] == [Fraction(1, 2), Fraction(-9, 4), Fraction(1), Fraction(-3, 4)]


def _step(p, g, v, lr, m, dtype):
    v = (m * v - g).astype(dtype)
    return (p + lr * v).astype(dtype), v


def test_rounding_bound_zero_roundings_demands_bitwise_and_names_the_element():
    p = np.array([1.0, 2.0, 3.0], np.float32)
    v = np.zeros(3, np.float32)
    generic = _step(p, np.ones(3, np.float32), v, 0.5, 0.9, np.float32)
    assert oracle.beyond_rounding_bound("w", generic, generic, v, 0.5, 0.9, 0) is None
    off = generic[0].copy()
    off[1] = np.nextafter(off[1], np.float32(10))
    where = oracle.beyond_rounding_bound("w", (off, generic[1]), generic, v, 0.5, 0.9, 0)
    assert where is not None and where.startswith("parameter 'w'[1]: fast ") and "0 rounding(s)" in where


def test_rounding_bound_one_rounding_accepts_one_ulp_not_ten():
    rng = np.random.default_rng(0)
    p, g, v = (rng.standard_normal(50).astype(np.float32) for _ in range(3))
    generic = _step(p, g, v, 0.25, 0.9, np.float32)
    one_ulp = np.nextafter(generic[1], np.float32(np.inf))
    assert oracle.beyond_rounding_bound("w", (generic[0], one_ulp), generic, v, 0.25, 0.9, 1) is None
    ten_ulps = generic[1] + 10 * np.spacing(generic[1])
    where = oracle.beyond_rounding_bound("w", (generic[0], ten_ulps), generic, v, 0.25, 0.9, 1)
    assert where is not None and where.startswith("state 'w'[")


def test_rounding_bound_among_subnormals_accepts_one_subnormal_step():
    """Where the results are subnormal one rounding errs by up to half the smallest subnormal,
    however small the values: the relative bound alone would call a correct fused step wrong."""
    tiny = np.finfo(np.float32).smallest_subnormal
    w = np.array([3 * tiny, 0.0], np.float32)
    v = np.zeros(2, np.float32)
    one_subnormal_off = w + np.array([tiny, 0.0], np.float32)
    assert oracle.beyond_rounding_bound("w", (one_subnormal_off, v), (w, v), v, 0.5, 0.9, 1) is None
    assert oracle.beyond_rounding_bound("w", (w + 8 * tiny, v), (w, v), v, 0.5, 0.9, 1) is not None
