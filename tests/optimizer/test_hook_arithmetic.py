"""The hooks' arithmetic as functions of arrays, checked against the formulas written out.

The operands are small dyadic numbers, so every sum and product below is
exact and the expected values need no tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from backends import Backend

from corrmom_ref.optimizer_hooks import add_lasso, add_weight_decay, clip_elements, clipping_factor

P = [1.5, -2.0, 0.0, 0.25]
G = [0.5, 0.25, -1.0, 2.0]


def test_add_weight_decay_is_g_plus_rate_times_scale_times_p(bk: Backend) -> None:
    p, g = bk.asarray(P), bk.asarray(G)
    got = bk.to_numpy(add_weight_decay(p, g, 0.25, 4.0))
    np.testing.assert_array_equal(got, [g_ + (0.25 * 4.0) * p_ for p_, g_ in zip(P, G, strict=True)])


def test_add_weight_decay_without_a_loss_scale(bk: Backend) -> None:
    got = bk.to_numpy(add_weight_decay(bk.asarray(P), bk.asarray(G), 0.5))
    np.testing.assert_array_equal(got, [g_ + 0.5 * p_ for p_, g_ in zip(P, G, strict=True)])


def test_add_lasso_is_g_plus_rate_times_sign_p(bk: Backend) -> None:
    got = bk.to_numpy(add_lasso(bk.asarray(P), bk.asarray(G), 0.5))
    sign = [math.copysign(1.0, x) if x else 0.0 for x in P]
    np.testing.assert_array_equal(got, [g_ + 0.5 * s for s, g_ in zip(sign, G, strict=True)])


def test_clip_elements_clips_into_the_bounds(bk: Backend) -> None:
    got = bk.to_numpy(clip_elements(bk.asarray(G), -0.5, 1.0))
    np.testing.assert_array_equal(got, [min(max(x, -0.5), 1.0) for x in G])


@pytest.mark.parametrize(
    "apply",
    [
        lambda p, g: add_weight_decay(p, g, 0.25, 2.0),
        lambda p, g: add_lasso(p, g, 0.25),
        lambda p, g: clip_elements(g, -0.5, 1.0),
    ],
    ids=["add_weight_decay", "add_lasso", "clip_elements"],
)
def test_the_functions_write_into_a_writeable_gradient(apply) -> None:
    """In place where possible: the torch hooks rely on it, they do not rebind ``param.grad``."""
    g = np.array(G, dtype=np.float32)
    assert apply(np.array(P, dtype=np.float32), g) is g


def test_a_read_only_gradient_is_left_alone() -> None:
    g = np.array(G, dtype=np.float32)
    g.flags.writeable = False
    out = add_weight_decay(np.array(P, dtype=np.float32), g, 0.25)
    assert out is not g
    np.testing.assert_array_equal(g, np.array(G, dtype=np.float32))


@pytest.mark.parametrize(
    ("threshold", "sqnorm", "expected"),
    [
        (1.0, 25.0, 1.0 / 5.0),  # norm 5 over threshold 1: scale by 1/5
        (5.0, 25.0, None),  # factor exactly 1: no clipping
        (10.0, 25.0, None),  # below the threshold
        (1.0, 0.0, None),  # zero norm: infinite factor, no clipping
    ],
)
def test_clipping_factor(threshold: float, sqnorm: float, expected: float | None) -> None:
    assert clipping_factor(threshold, sqnorm) == expected
