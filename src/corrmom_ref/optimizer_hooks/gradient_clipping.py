r"""Global-norm gradient clipping."""

from __future__ import annotations

import math
from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace, is_numpy_array

__all__ = ["GradientClipping", "clipping_factor"]


def clipping_factor(threshold: float, sqnorm: float) -> float | None:
    r""":math:`\tau / n` for :math:`n = \sqrt{\text{sqnorm}}` when it is below 1, else ``None`` (no clipping).

    A zero norm also gives ``None``: the factor would be infinite.
    """
    norm = math.sqrt(sqnorm)
    if norm == 0.0:
        return None
    rate = threshold / norm
    return None if rate >= 1 else rate


class GradientClipping:
    r"""Rescale all gradients so that their global L2 norm is at most ``threshold``.

    With :math:`n = \sqrt{\sum_p \lVert g_p \rVert^2}`, every gradient is
    multiplied by :math:`\tau / n` when that is below 1. As an optimizer pre
    hook it sees loss-scaled gradients, and (as in Chainer) does not unscale
    them, so it clips the scaled norm.

    On NumPy the squared norms are Chainer's: one ``dot`` per gradient in the
    gradient's dtype, summed in parameter order
    (``corrmom_ref.optimizer_hooks._numpy_norms``), so the result is Chainer's bit
    for bit. Other backends accumulate :math:`\sum g^2` in float64 (see
    ``docs/backends.md`` for the bound between the two).

    Args:
        threshold: :math:`\tau`.
    """

    name = "GradientClipping"
    timing = "pre"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def __call__(self, opt: Any) -> None:
        params = [p for p in opt.target.params() if p.grad is not None]
        if params and all(is_numpy_array(p.grad) for p in params):
            from corrmom_ref.optimizer_hooks._numpy_norms import clip_by_global_norm

            clipped = clip_by_global_norm([p.grad for p in params], self.threshold)
            for param, grad in zip(params, clipped or (), strict=False):
                param.grad = grad
            return
        sqnorm = 0.0
        for param in params:
            xp = array_namespace(param.grad)
            sqnorm += float(xp.sum(param.grad * param.grad))
        rate = clipping_factor(self.threshold, sqnorm)
        if rate is None:
            return
        for param in params:
            param.grad = xpx.at(param.grad)[...].multiply(rate)
