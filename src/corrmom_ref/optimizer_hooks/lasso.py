r"""L1 regularisation: :math:`g \leftarrow g + \lambda\,\operatorname{sign}(p)`."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace

__all__ = ["Lasso", "add_lasso"]


def add_lasso(p: Any, g: Any, rate: float) -> Any:
    r""":math:`g + \lambda \operatorname{sign}(p)`, written into ``g`` where it is writeable; the result."""
    return xpx.at(g)[...].add(rate * array_namespace(p).sign(p))


class Lasso:
    r"""Add :math:`\lambda \operatorname{sign}(p)` to each gradient.

    Unlike :class:`WeightDecay` it does not multiply the rate by the loss
    scale (Chainer 7.8.1 does not either), so under loss scaling the
    effective rate is :math:`\lambda / s`. Kept for identical numbers.

    Args:
        rate: :math:`\lambda`.
    """

    name = "Lasso"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, rule: Any, param: Any) -> None:
        p, g = param.array, param.grad
        if p is None or g is None:
            return
        param.grad = add_lasso(p, g, self.rate)
