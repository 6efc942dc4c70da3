"""Chainer's built-in optimizer hooks, on the Array API.

Per-parameter hooks (``call_for_each_param = True``) are called as
``hook(update_rule, param)``; whole-optimizer hooks as ``hook(optimizer)``.
All default to ``timing = 'pre'``. Gradients are modified in place where the
backend allows, otherwise ``param.grad`` is rebound.
"""

from corrmom_ref.optimizer_hooks.gradient_clipping import GradientClipping
from corrmom_ref.optimizer_hooks.gradient_hard_clipping import GradientHardClipping
from corrmom_ref.optimizer_hooks.gradient_lars import GradientLARS
from corrmom_ref.optimizer_hooks.gradient_noise import GradientNoise, exponential_decay_noise
from corrmom_ref.optimizer_hooks.lasso import Lasso
from corrmom_ref.optimizer_hooks.weight_decay import WeightDecay

__all__ = [
    "GradientClipping",
    "GradientHardClipping",
    "GradientLARS",
    "GradientNoise",
    "Lasso",
    "WeightDecay",
    "exponential_decay_noise",
]
