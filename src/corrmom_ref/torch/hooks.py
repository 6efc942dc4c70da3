r"""Chainer's optimizer hooks for :mod:`corrmom_ref.torch` optimizers.

Register them with ``optimizer.add_hook(hook)``: they run inside
:meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` at Chainer's ``pre``
point, after cleared gradients became zeros and after the non-finite check,
before ``t`` advances and before the gradients are unscaled, so, as in
Chainer, they see loss-scaled gradients. Per-parameter hooks are called as
``hook(optimizer, param)``, whole-optimizer hooks as ``hook(optimizer)``.

Each is the reference hook of the same name (:mod:`corrmom_ref.optimizer_hooks`:
its name, timing and arguments) with a ``__call__`` for PyTorch's parameters,
and does Chainer's arithmetic in Chainer's order on the gradient in place with
that module's functions, so the maths is written once:

* :class:`WeightDecay`: :math:`g \mathrel{+}= (\lambda s)\,p` (:math:`s` the loss scale, 1 without);
* :class:`Lasso`: :math:`g \mathrel{+}= \lambda \operatorname{sign}(p)` (no :math:`s`, as in Chainer 7.8.1);
* :class:`GradientClipping`: :math:`g \mathrel{*}= \tau / n` when that is below 1, with
  :math:`n` the global L2 norm of the (scaled) gradients (each :math:`g \cdot g` in
  the gradient's dtype, as Chainer; their sum in double precision, where Chainer
  sums in the gradient's dtype, so the two may differ in the last bits of :math:`n`);
* :class:`GradientHardClipping`: :math:`g \leftarrow \operatorname{clip}(g, a, b)`.

``GradientNoise`` and ``GradientLARS`` are left out: the first draws from
NumPy's global random state inside the hook (no PyTorch-side stream could
reproduce Chainer's draws), the second is a per-rule hook reading the rule's
hyperparameters, which PyTorch keeps per group.
"""

from __future__ import annotations

from typing import Any

import torch

from corrmom_ref import optimizer_hooks as reference
from corrmom_ref.optimizer_hooks import add_lasso, add_weight_decay, clip_elements, clipping_factor

__all__ = ["GradientClipping", "GradientHardClipping", "Lasso", "WeightDecay"]


class WeightDecay(reference.WeightDecay):
    r"""Coupled L2 decay: :math:`g \mathrel{+}= \lambda s\,p` per parameter (``pre``).

    Args:
        rate: :math:`\lambda`.
    """

    def __call__(self, optimizer: Any, param: torch.Tensor) -> None:
        g = param.grad
        if g is None:
            return
        with torch.no_grad():
            add_weight_decay(param, g, self.rate, getattr(optimizer, "loss_scale", None))


class Lasso(reference.Lasso):
    r"""L1 term: :math:`g \mathrel{+}= \lambda \operatorname{sign}(p)` per parameter (``pre``).

    The rate is not multiplied by the loss scale (Chainer 7.8.1 does not), so
    under loss scaling the effective rate is :math:`\lambda / s`.

    Args:
        rate: :math:`\lambda`.
    """

    def __call__(self, optimizer: Any, param: torch.Tensor) -> None:
        g = param.grad
        if g is None:
            return
        with torch.no_grad():
            add_lasso(param, g, self.rate)


class GradientClipping(reference.GradientClipping):
    r"""Scale every gradient by :math:`\tau / n` when the global L2 norm :math:`n` exceeds :math:`\tau` (``pre``).

    :math:`n^2` is the sum over parameters of :math:`g \cdot g`, each computed
    in the gradient's dtype (PyTorch's summation order, not NumPy's BLAS, so
    :math:`n` may differ from Chainer's in the last bits); under loss scaling the norm is the scaled one (as
    in Chainer). A zero norm leaves the gradients alone.

    Args:
        threshold: :math:`\tau`.
    """

    def __call__(self, optimizer: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        with torch.no_grad():
            sqnorm = sum(float(torch.dot(g.reshape(-1), g.reshape(-1))) for g in grads)
            rate = clipping_factor(self.threshold, sqnorm)
            if rate is None:
                return
            for g in grads:
                g *= rate


class GradientHardClipping(reference.GradientHardClipping):
    """Clip every gradient element into ``[lower_bound, upper_bound]`` (per parameter, ``pre``).

    Args:
        lower_bound: Smallest allowed value.
        upper_bound: Largest allowed value.
    """

    def __call__(self, optimizer: Any, param: torch.Tensor) -> None:
        g = param.grad
        if g is None:
            return
        with torch.no_grad():
            clip_elements(g, self.lower_bound, self.upper_bound)
