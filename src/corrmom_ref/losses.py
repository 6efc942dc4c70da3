"""Loss objects for :meth:`~corrmom_ref.GradientMethod.update` without autodiff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace, device

if TYPE_CHECKING:
    from corrmom_ref.link import Parameter

__all__ = ["ScriptedLoss"]


class ScriptedLoss:
    r"""A loss whose gradients are given: :math:`L = \sum_p \langle g_p, p \rangle`.

    ``backward(loss_scale=s)`` does what a framework's backward does with a
    scaled loss: it sets ``param.grad = s * g_p`` computed in the gradient's
    dtype (``s`` is rounded to that dtype first, then multiplied, as
    Chainer's backward of a float16 loss does, for 0-d gradients too and on
    every backend; so float16 can overflow as it would) and records
    ``param.loss_scale = s``. Parameters not in ``grads`` are left alone
    (their gradients stay cleared).

    Args:
        grads: The gradient of each parameter.

    >>> import numpy as np
    >>> import corrmom_ref as cr
    >>> w = cr.Parameter(np.zeros(2, dtype=np.float32))
    >>> opt = cr.CorrectedMomentumSGD(lr=1.0).setup(cr.Link(w=w))
    >>> opt.set_loss_scale(8.0)
    >>> opt.update(lambda: cr.ScriptedLoss({w: np.array([1.0, 2.0], dtype=np.float32)}))
    >>> w.array  # the rule divided the scaled gradient by 8 before updating
    array([-1., -2.], dtype=float32)
    """

    def __init__(self, grads: Mapping[Parameter, Any]) -> None:
        self.grads = dict(grads)

    def backward(self, loss_scale: float | None = None) -> None:
        """Set each parameter's gradient (scaled by ``loss_scale``) and its loss scale."""
        for param, grad in self.grads.items():
            xp = array_namespace(grad)
            if loss_scale is None:
                param.grad = xp.asarray(grad, copy=True)
            else:
                # the scale as an array of the gradient's dtype: NumPy 1.x would multiply a 0-d
                # array by a Python float in float64, while n-d arrays (and Chainer's backward) do
                # it in the gradient's dtype
                scale = xp.asarray(loss_scale, dtype=grad.dtype, device=device(grad))
                param.grad = xp.asarray(grad * scale, dtype=grad.dtype)
            param.loss_scale = loss_scale
