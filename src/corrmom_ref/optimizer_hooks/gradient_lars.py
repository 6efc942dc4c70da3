r"""Layer-wise adaptive rate scaling (You et al., 2017)."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace, is_numpy_array


class GradientLARS:
    r"""Scale each gradient by a layer-wise trust ratio.

    .. math::

        r = \begin{cases}
            \dfrac{\lVert p \rVert}{\epsilon + \lVert g \rVert + \lambda \lVert p \rVert}
                & \lVert p \rVert > \text{threshold}\\
            1 & \text{otherwise}
        \end{cases}
        \qquad g \leftarrow r\,(g + \lambda p)

    Args:
        threshold: Parameters with a smaller norm are not rescaled.
        weight_decay: :math:`\lambda`.
        eps: :math:`\epsilon`, keeps the ratio finite.

    On NumPy the norms are ``numpy.linalg.norm`` and the ratio is formed from
    NumPy scalars as in Chainer (``corrmom_ref.optimizer_hooks._numpy_norms``),
    bit for bit; other backends compute :math:`\sqrt{\sum x^2}` in the
    array's dtype (see ``docs/backends.md`` for the bound).
    """

    name = "GradientLARS"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, threshold: float = 0.01, weight_decay: float = 0.0, eps: float = 1e-9) -> None:
        self.threshold = threshold
        self.weight_decay = weight_decay
        self.eps = eps

    def __call__(self, rule: Any, param: Any) -> None:
        p, g = param.array, param.grad
        if p is None or g is None:
            return
        if is_numpy_array(p) and is_numpy_array(g):
            from corrmom_ref.optimizer_hooks._numpy_norms import lars_scale

            param.grad = lars_scale(p, g, self.threshold, self.weight_decay, self.eps)
            return
        xp = array_namespace(p)
        p_norm = xp.sqrt(xp.sum(p * p))
        g_norm = xp.sqrt(xp.sum(g * g))
        local_rate = p_norm / (self.eps + g_norm + self.weight_decay * p_norm)
        rate = xp.where(p_norm > self.threshold, local_rate, xp.ones_like(local_rate))
        g = xpx.at(g)[...].add(self.weight_decay * p)
        param.grad = xpx.at(g)[...].multiply(rate)
