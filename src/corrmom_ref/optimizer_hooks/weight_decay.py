r"""Coupled L2 weight decay: :math:`g \leftarrow g + \lambda p`."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx

__all__ = ["WeightDecay", "add_weight_decay"]


def add_weight_decay(p: Any, g: Any, rate: float, loss_scale: float | None = None) -> Any:
    r""":math:`g + (\lambda s)\,p`, written into ``g`` where it is writeable; the result.

    :math:`s` is ``loss_scale`` (1 when ``None``): the rate is multiplied by it
    first, as Chainer does, so the product rounds as Chainer's.
    """
    if loss_scale is not None:
        rate *= loss_scale
    return xpx.at(g)[...].add(rate * p)


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
        param.grad = add_weight_decay(p, g, self.rate, getattr(param, "loss_scale", None))
