"""Chainer's built-in optimizer hooks, on the Array API.

Per-parameter hooks (``call_for_each_param = True``) are called as
``hook(update_rule, param)``; whole-optimizer hooks as ``hook(optimizer)``.
All default to ``timing = 'pre'``. Gradients are modified in place where the
backend allows, otherwise ``param.grad`` is rebound.

The arithmetic of the hooks is also public as functions of arrays
(:func:`add_weight_decay`, :func:`add_lasso`, :func:`clip_elements`,
:func:`clipping_factor`), which :mod:`corrmom_ref.torch`'s hooks call too,
so that each formula is written once.
"""

from corrmom_ref.optimizer_hooks.gradient_clipping import GradientClipping, clipping_factor
from corrmom_ref.optimizer_hooks.gradient_hard_clipping import GradientHardClipping, clip_elements
from corrmom_ref.optimizer_hooks.gradient_lars import GradientLARS
from corrmom_ref.optimizer_hooks.gradient_noise import GradientNoise, exponential_decay_noise
from corrmom_ref.optimizer_hooks.lasso import Lasso, add_lasso
from corrmom_ref.optimizer_hooks.weight_decay import WeightDecay, add_weight_decay

__all__ = [
    "GradientClipping",
    "GradientHardClipping",
    "GradientLARS",
    "GradientNoise",
    "Lasso",
    "WeightDecay",
    "add_lasso",
    "add_weight_decay",
    "clip_elements",
    "clipping_factor",
    "exponential_decay_noise",
]
