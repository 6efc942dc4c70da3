r"""Coupled L2 weight decay: :math:`g \leftarrow g + \lambda p`."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx


class WeightDecay:
    r"""Add :math:`\lambda p` to each gradient (L2 regularisation, coupled).

    As an optimizer pre hook it sees gradients still scaled by the loss scale
    :math:`s`, so, like Chainer, it adds :math:`s \lambda p` when the
    parameter carries a loss scale.

    Args:
        rate: :math:`\lambda`.
    """

    name = "WeightDecay"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, rule: Any, param: Any) -> None:
        p, g = param.array, param.grad
        if p is None or g is None:
            return
        rate = self.rate
        scale = getattr(param, "loss_scale", None)
        if scale is not None:
            rate *= scale
        param.grad = xpx.at(g)[...].add(rate * p)
