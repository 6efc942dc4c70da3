r"""L1 regularisation: :math:`g \leftarrow g + \lambda\,\operatorname{sign}(p)`."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace


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
        xp = array_namespace(p)
        param.grad = xpx.at(g)[...].add(self.rate * xp.sign(p))
