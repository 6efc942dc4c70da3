"""Wrong implementations that passed the suite before issue 23's checks.

Each reference mutant here was run through the whole suite of c1ab618 and
passed it; the ports' mutants passed it because that suite ran no exactness
or built-in-hook check on the ports.

Each is one plausible bug of someone porting Chainer's optimizer, in an area
issue 23 found the suite never looked at: the sign of zeros, combinations
(float32 master with loss scaling, clipping under a loss scale), a rule
disabled after it has stepped, counters after a skipped step, large finite
float32 and float64 gradients, the second angles of properties only one
check caught (:data:`SECOND_ANGLES`), the ports' exact modes and the torch
port's hooks. Exposed as adapter factories (``--impl=tests.conformance_meta.gap_mutants:<name>``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import corrmom_ref as cr
from corrmom_conformance.adapters.reference import ReferenceAdapter
from corrmom_ref import optimizer_hooks
from corrmom_ref.optimizers.corrected_momentum_sgd import CorrectedMomentumSGDRule
from tests.conformance_meta.blind_spot_mutants import _finite_check, _with_hook, _with_rule_class
from tests.conformance_meta.mutants import _adapter, _with_rule

# -- sign bits -------------------------------------------------------------------


def first_step_buffer_is_minus_gradient() -> ReferenceAdapter:
    """torch's habit ported to Chainer's sign: while the buffer is all zeros it becomes ``-g`` (not ``m v - g``).

    Equal in value to Chainer's step; but ``-(+0.0)`` is ``-0.0`` where
    Chainer's ``0 * m - 0.0`` is ``+0.0``, in the buffer and in a ``-0.0`` parameter.
    """

    def step(xp, p, g, v, lr, m):
        kind = p.dtype.type
        v = -g if not np.any(v) else (kind(m) * v - g).astype(p.dtype)
        return (p + kind(lr) * v).astype(p.dtype), v

    return _adapter("first_step_buffer_is_minus_gradient", _with_rule(step))


# -- combinations ----------------------------------------------------------------


def master_unscaled_in_float16() -> ReferenceAdapter:
    """With fp32 update, the float16 gradient is divided by the loss scale in float16, then cast to the master."""

    class Rule(CorrectedMomentumSGDRule):
        def update(self, param: Any) -> None:
            scale = getattr(param, "loss_scale", None)
            on_master = self._use_fp32_update and param.array.dtype == np.float16
            if not (on_master and self.enabled and scale is not None and param.grad is not None):
                super().update(param)
                return
            param.grad = np.divide(param.grad, np.float16(scale), dtype=np.float16)
            param.loss_scale = None
            try:
                super().update(param)
            finally:
                param.loss_scale = scale

    return _with_rule_class("master_unscaled_in_float16", Rule)


def clipping_measures_the_true_norm() -> ReferenceAdapter:
    """GradientClipping "fixed" to divide the global norm by the loss scale (it clips the true norm)."""

    class Hook(optimizer_hooks.GradientClipping):
        def __call__(self, opt: Any) -> None:
            scale = opt._loss_scale or 1.0
            params = [p for p in opt.target.params() if p.grad is not None]
            norm = float(np.sqrt(sum(float(np.sum(p.grad * p.grad)) for p in params))) / scale
            if norm > self.threshold:
                for p in params:
                    p.grad = (p.grad * (self.threshold / norm)).astype(p.grad.dtype)

    return _with_hook("clipping_measures_the_true_norm", "GradientClipping", Hook)


# -- disabled rules ----------------------------------------------------------------


def batched_rules_ignore_enabled() -> ReferenceAdapter:
    """The batched path forgets ``enabled``: a rule disabled once its state exists is still stepped with the others."""

    class Rule(CorrectedMomentumSGDRule):
        batchable = True

        def batch_key(self, param: Any) -> Any:
            enabled, self.enabled = self.enabled, True
            try:
                return super().batch_key(param)
            finally:
                self.enabled = enabled

    return _with_rule_class("batched_rules_ignore_enabled", Rule)


# -- counters after a skipped step ----------------------------------------------------


def rule_t_loaded_from_the_optimizers() -> ReferenceAdapter:
    """Loading sets every rule's t to the optimizer's t ("they step together"), counting skipped steps as updates."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def _load(self, serializer: Any) -> None:
            super()._load(serializer)
            for param in self.target.params():
                if param.update_rule is not None:
                    param.update_rule.t = self.t

    return _adapter("rule_t_loaded_from_the_optimizers", Optimizer)


# -- large finite gradients ------------------------------------------------------------


def overflow_above_float16_max() -> ReferenceAdapter:
    """Any gradient element above 65504 in magnitude counts as an overflow, whatever the parameter's dtype
    (float16's largest value, the cap of the loss scale, taken for every dtype's limit)."""
    return _finite_check("overflow_above_float16_max", lambda g, s: bool(np.all(np.abs(g) <= 65504.0)))


# -- second angles (item 8) ------------------------------------------------------------


def float64_stepped_in_float32() -> ReferenceAdapter:
    """A float32 kernel for every dtype: float64 parameters are stepped in float32 and cast back."""

    def step(xp, p, g, v, lr, m):
        p32, g32, v32 = (np.asarray(a, np.float32) for a in (p, g, v))
        v32 = np.float32(m) * v32 - g32
        return (p32 + np.float32(lr) * v32).astype(p.dtype), v32.astype(v.dtype)

    return _adapter("float64_stepped_in_float32", _with_rule(step))


# -- the ports' exact modes ---------------------------------------------------------------


def ref_torch_unscale_by_reciprocal() -> Any:
    """corrmom_ref.torch divides the loss scale out as ``g * (1/s)`` (one ulp off ``g / s`` for some g and s)."""
    import corrmom_ref.torch as crt
    from corrmom_conformance.adapters.ref_torch import RefTorchAdapter, RefTorchOptimizer

    class Optimizer(crt.CorrectedMomentumSGD):
        def _prepare(self, p: Any, scale: float | None) -> Any:
            target, grad, v = super()._prepare(p, None)
            if scale is not None:
                grad.mul_(1.0 / scale)
            return target, grad, v

    class MutantOptimizer(RefTorchOptimizer):
        optimizer_class = Optimizer

    class Adapter(RefTorchAdapter):
        name = "mutant-ref_torch_unscale_by_reciprocal"

        def create(self, params: Any, *, lr: float, momentum: float) -> Any:
            return MutantOptimizer(params, lr, momentum, self._fused)

        def exact_variant(self) -> Any:
            return Adapter(fused=False)

    return Adapter()


def ref_optax_unscale_by_reciprocal() -> Any:
    """corrmom_ref.optax's loss scaling multiplies by ``1/s`` (what XLA makes of a division by a scalar)."""
    from corrmom_conformance.adapters.ref_optax import RefOptaxAdapter
    from corrmom_ref.optax import _loss_scaling

    _loss_scaling._unscale = lambda g, s: g * (1.0 / s).astype(g.dtype)  # this mutant's process only

    class Adapter(RefOptaxAdapter):
        name = "mutant-ref_optax_unscale_by_reciprocal"

        def exact_variant(self) -> Any:
            return Adapter(exact=True)

    return Adapter()


# -- the torch port's hooks ----------------------------------------------------------------


def ref_torch_weight_decay_ignores_loss_scale() -> Any:
    """corrmom_ref.torch's WeightDecay adds lambda p to the scaled gradient (an effective rate lambda / s)."""
    import types

    import torch

    import corrmom_ref.torch.hooks as hooks
    from corrmom_conformance.adapters.ref_torch import RefTorchAdapter, RefTorchOptimizer

    class WeightDecay(hooks.WeightDecay):
        def __call__(self, optimizer: Any, param: Any) -> None:
            if param.grad is not None:
                with torch.no_grad():
                    param.grad.add_(param, alpha=self.rate)

    class MutantOptimizer(RefTorchOptimizer):
        hooks_module = types.SimpleNamespace(
            **{**{n: getattr(hooks, n) for n in hooks.__all__}, "WeightDecay": WeightDecay}
        )

    class Adapter(RefTorchAdapter):
        name = "mutant-ref_torch_weight_decay_ignores_loss_scale"

        def create(self, params: Any, *, lr: float, momentum: float) -> Any:
            return MutantOptimizer(params, lr, momentum, self._fused)

    return Adapter()


def ref_torch_frozen_parameters_step() -> Any:
    """corrmom_ref.torch steps a parameter frozen with ``requires_grad_(False)``: a zero gradient and
    the momentum move it, as a port that ignores ``requires_grad`` does (issue 20, item 1)."""
    import torch

    import corrmom_ref.torch as crt
    from corrmom_conformance.adapters.ref_torch import RefTorchAdapter, RefTorchOptimizer

    class SteppingFrozen(crt.CorrectedMomentumSGD):
        def _update_group(self, group: Any, lr: float, m: float, scale: float | None) -> None:
            frozen = [p for p in group["params"] if not p.requires_grad]
            for p in frozen:
                p.requires_grad_(True)
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            try:
                super()._update_group(group, lr, m, scale)
            finally:
                for p in frozen:
                    p.requires_grad_(False)

    class MutantOptimizer(RefTorchOptimizer):
        optimizer_class = SteppingFrozen

    class Adapter(RefTorchAdapter):
        name = "mutant-ref_torch_frozen_parameters_step"

        def create(self, params: Any, *, lr: float, momentum: float) -> Any:
            return MutantOptimizer(params, lr, momentum, self._fused)

    return Adapter()


#: Which family must reject which mutant.
KILLS: list[tuple[str, str]] = [
    ("first_step_buffer_is_minus_gradient", "test_exactness"),
    ("master_unscaled_in_float16", "test_exactness"),
    ("clipping_measures_the_true_norm", "test_machinery"),
    ("batched_rules_ignore_enabled", "test_machinery"),
    ("rule_t_loaded_from_the_optimizers", "test_serialization"),
    ("overflow_above_float16_max", "test_loss_scaling"),
    ("ref_torch_unscale_by_reciprocal", "test_exactness"),
    ("ref_optax_unscale_by_reciprocal", "test_exactness"),
    ("ref_torch_weight_decay_ignores_loss_scale", "test_machinery"),
    ("ref_torch_frozen_parameters_step", "test_machinery"),
]

#: Mutants that need a package besides the reference's (skipped only where it is missing).
REQUIRES: dict[str, str] = {
    "ref_torch_unscale_by_reciprocal": "torch",
    "ref_optax_unscale_by_reciprocal": "optax",
    "ref_torch_weight_decay_ignores_loss_scale": "torch",
    "ref_torch_frozen_parameters_step": "torch",
}

#: Properties that one check alone caught before issue 23, each with a second, independent check:
#: (mutant, "family::check"): that check alone, run by itself, must reject the mutant.
SECOND_ANGLES: list[tuple[str, str]] = [
    (
        "tests.conformance_meta.gap_mutants:float64_stepped_in_float32",
        "test_equations::test_trajectory_matches_eq9_float64",
    ),
    (
        "tests.conformance_meta.gap_mutants:float64_stepped_in_float32",
        "test_equations::test_exact_dyadic_trajectory_float64",
    ),
    (
        "tests.conformance_meta.blind_spot_mutants:loader_restores_hyperparameters",
        "test_serialization::test_first_step_after_load_uses_the_optimizers_lr_and_momentum",
    ),
    (
        "tests.conformance_meta.blind_spot_mutants:overflow_history_not_saved",
        "test_serialization::test_snapshot_after_an_overflow_grows_slowly_in_the_reference",
    ),
    (
        "tests.conformance_meta.blind_spot_mutants:lars_without_decay_term",
        "test_machinery::test_lars_below_its_threshold_is_weight_decay",
    ),
]
