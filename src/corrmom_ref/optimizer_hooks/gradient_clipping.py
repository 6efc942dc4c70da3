r"""Global-norm gradient clipping."""

from __future__ import annotations

import math
from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace


class GradientClipping:
    r"""Rescale all gradients so that their global L2 norm is at most ``threshold``.

    With :math:`n = \sqrt{\sum_p \lVert g_p \rVert^2}`, every gradient is
    multiplied by :math:`\tau / n` when that is below 1. As an optimizer pre
    hook it sees loss-scaled gradients, and (as in Chainer) does not unscale
    them, so it clips the scaled norm.

    Args:
        threshold: :math:`\tau`.
    """

    name = "GradientClipping"
    timing = "pre"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def __call__(self, opt: Any) -> None:
        params = [p for p in opt.target.params() if p.grad is not None]
        sqnorm = 0.0
        for param in params:
            xp = array_namespace(param.grad)
            sqnorm += float(xp.sum(param.grad * param.grad))
        norm = math.sqrt(sqnorm)
        if norm == 0.0:
            return
        rate = self.threshold / norm
        if rate >= 1:
            return
        for param in params:
            param.grad = xpx.at(param.grad)[...].multiply(rate)
