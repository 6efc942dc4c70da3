"""Wrong implementations that passed the suite before issue 13's checks (each verified to).

Each is the reference with one plausible bug in an area the suite did not
look at: hooks that modify gradients, hooks on skipped steps, the loss-scale
cap after an overflow, large finite gradients, what a snapshot restores,
disabled rules, Chainer's built-in hooks, and Chainer's rounding. Exposed as
adapter factories (``--impl=tests.conformance_meta.blind_spot_mutants:<name>``).
"""

from __future__ import annotations

import dataclasses
import types
import warnings
from typing import Any, ClassVar

import numpy as np

import corrmom_ref as cr
from corrmom_conformance.adapters.chainer_style import Flavour
from corrmom_conformance.adapters.reference import ReferenceAdapter
from corrmom_ref import optimizer_hooks
from corrmom_ref.optimizers.corrected_momentum_sgd import CorrectedMomentumSGDRule
from tests.conformance_meta.mutants import _adapter, _with_rule


def _with_rule_class(name: str, rule: type) -> ReferenceAdapter:
    return _adapter(name, type("MutantOptimizer", (cr.CorrectedMomentumSGD,), {"rule_class": rule}))


class _HooksAdapter(ReferenceAdapter):
    """The reference with the built-in hooks in ``replaced`` swapped for mutants."""

    replaced: ClassVar[dict[str, type]] = {}

    def flavour(self) -> Flavour:
        base = super().flavour()
        if "optimizer_hooks" not in {f.name for f in dataclasses.fields(base)}:
            return base  # a suite from before built-in hooks: nothing to replace
        hooks = {n: getattr(optimizer_hooks, n) for n in optimizer_hooks.__all__} | self.replaced
        return dataclasses.replace(base, optimizer_hooks=types.SimpleNamespace(**hooks))


def _with_hook(name: str, kind: str, hook: type) -> ReferenceAdapter:
    adapter = _HooksAdapter("numpy")
    adapter.replaced = {kind: hook}
    adapter.name = f"mutant-{name}"
    return adapter


# -- hooks -----------------------------------------------------------------------


def grads_gathered_before_pre_hooks() -> ReferenceAdapter:
    """The update uses the gradients as they were before the pre hooks ran."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def call_hooks(self, timing: str = "pre") -> None:
            if timing != "pre":
                super().call_hooks(timing)
                return
            params = list(self.target.params())
            kept = [p.grad for p in params]
            kept = [None if g is None else g.copy() for g in kept]
            super().call_hooks(timing)
            for p, g in zip(params, kept, strict=True):
                p.grad = g

    return _adapter("grads_gathered_before_pre_hooks", Optimizer)


def remove_hook_spares_post_hooks() -> ReferenceAdapter:
    """``remove_hook`` unregisters pre hooks only; a removed post hook keeps running."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def remove_hook(self, name: str) -> None:
            hooks = self._registry()._hooks
            if name in hooks["pre"]:
                del hooks["pre"][name]
            elif name not in hooks["post"]:
                raise KeyError(name)

    return _adapter("remove_hook_spares_post_hooks", Optimizer)


def rule_remove_hook_spares_post_hooks() -> ReferenceAdapter:
    """An update rule's ``remove_hook`` unregisters pre hooks only."""

    class Rule(CorrectedMomentumSGDRule):
        def remove_hook(self, name: str) -> None:
            hooks = self._hooks._hooks
            if name in hooks["pre"]:
                del hooks["pre"][name]
            elif name not in hooks["post"]:
                raise KeyError(name)

    return _with_rule_class("rule_remove_hook_spares_post_hooks", Rule)


def first_pre_hook_sees_none() -> ReferenceAdapter:
    """Cleared gradients are reallocated only after each pre hook, so the first one sees ``None``."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def update(self, lossfun: Any = None, *args: Any, **kwds: Any) -> None:
            original = self.reallocate_cleared_grads
            calls = {"n": 0}

            def skip_first() -> None:
                calls["n"] += 1
                if calls["n"] > 1 or not self._registry().names("pre"):
                    original()

            self.reallocate_cleared_grads = skip_first  # type: ignore[method-assign]
            try:
                super().update(lossfun, *args, **kwds)
            finally:
                del self.reallocate_cleared_grads

    return _adapter("first_pre_hook_sees_none", Optimizer)


def rule_pre_hooks_after_update_core() -> ReferenceAdapter:
    """A rule's pre hooks run after its update_core (their gradient changes come too late)."""

    class Rule(CorrectedMomentumSGDRule):
        def update_core(self, param: Any) -> None:
            super().update_core(param)
            for hook in self.__dict__.get("late_pre", {}).values():
                hook(self, param)

        def update(self, param: Any) -> None:
            registry = self._hooks._hooks
            self.__dict__["late_pre"], registry["pre"] = registry["pre"], {}
            try:
                super().update(param)
            finally:
                registry["pre"] = self.__dict__.pop("late_pre")

    return _with_rule_class("rule_pre_hooks_after_update_core", Rule)


# -- NaN skipping ------------------------------------------------------------------


def no_post_hooks_on_skipped_step() -> ReferenceAdapter:
    """A skipped step returns before the optimizer's post hooks."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def call_hooks(self, timing: str = "pre") -> None:
            if timing == "post" and not self.is_safe_to_update():
                return
            super().call_hooks(timing)

    return _adapter("no_post_hooks_on_skipped_step", Optimizer)


def rule_hooks_on_skipped_step() -> ReferenceAdapter:
    """On a skipped step the rules' hooks still run (only the arithmetic is skipped)."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def call_hooks(self, timing: str = "pre") -> None:
            if timing == "post" and not self.is_safe_to_update():
                for param in self.target.params():
                    for rule_timing in ("pre", "post"):
                        for hook in param.update_rule._hooks.of(rule_timing):
                            hook(param.update_rule, param)
            super().call_hooks(timing)

    return _adapter("rule_hooks_on_skipped_step", Optimizer)


def static_scaling_skips_non_finite() -> ReferenceAdapter:
    """Any loss scaling, static too, skips a step with a non-finite gradient."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def check_nan_in_grads(self) -> None:
            scaling = self._loss_scaling
            dynamic = scaling.dynamic
            if scaling.scale is not None:
                scaling.dynamic = True
            try:
                super().check_nan_in_grads()
            finally:
                scaling.dynamic = dynamic

    return _adapter("static_scaling_skips_non_finite", Optimizer)


# -- loss scaling ------------------------------------------------------------------


def uncapped_after_an_overflow() -> ReferenceAdapter:
    """The cap of 65504 applies only while no overflow has happened."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def update_loss_scale(self) -> None:
            scaling = self._loss_scaling
            if scaling.dynamic and scaling.nonfinite_ever and not scaling.nonfinite_now:
                scaling.scale *= scaling.multiplier
                return
            super().update_loss_scale()

    return _adapter("uncapped_after_an_overflow", Optimizer)


def _finite_check(name: str, finite: Any) -> ReferenceAdapter:
    class Optimizer(cr.CorrectedMomentumSGD):
        def check_nan_in_grads(self) -> None:
            scaling = self._loss_scaling
            scaling.record(False)
            if not scaling.dynamic:
                return
            for path, param in self.target.namedparams():
                if param.grad is not None and not finite(param.grad, scaling.scale):
                    scaling.record(True)
                    warnings.warn(f"Non finite number found in param.grad of {path}", stacklevel=2)

    return _adapter(name, Optimizer)


def overflow_test_by_squares() -> ReferenceAdapter:
    """Finiteness tested on the sum of squares in the gradient's dtype (float16 overflows from 256 on)."""
    with np.errstate(over="ignore"):
        return _finite_check(
            "overflow_test_by_squares", lambda g, s: bool(np.isfinite(np.sum(g * g, dtype=g.dtype)))
        )


def overflow_test_scales_again() -> ReferenceAdapter:
    """Finiteness tested on the gradient times the loss scale (the scaled gradient scaled twice)."""

    def finite(g: Any, s: float) -> bool:
        with np.errstate(over="ignore"):
            return bool(np.all(np.isfinite(g * g.dtype.type(s))))

    return _finite_check("overflow_test_scales_again", finite)


# -- serialization -----------------------------------------------------------------


def epoch_not_restored() -> ReferenceAdapter:
    """Loading restores everything but the epoch."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def _load(self, serializer: Any) -> None:
            epoch = self.epoch
            super()._load(serializer)
            self.epoch = epoch

    return _adapter("epoch_not_restored", Optimizer)


def overflow_history_not_saved() -> ReferenceAdapter:
    """The snapshot says no overflow ever happened, so a resumed scale doubles again."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def _save_loss_scaling(self, serializer: Any) -> None:
            scaling = self._loss_scaling
            ever = scaling.nonfinite_ever
            scaling.nonfinite_ever = False
            try:
                super()._save_loss_scaling(serializer)
            finally:
                scaling.nonfinite_ever = ever

    return _adapter("overflow_history_not_saved", Optimizer)


def loader_restores_hyperparameters() -> ReferenceAdapter:
    """Snapshots carry lr and momentum, and loading sets them."""
    from corrmom_ref.serializers.base import Deserializer

    class Optimizer(cr.CorrectedMomentumSGD):
        def serialize(self, serializer: Any) -> None:
            if isinstance(serializer, Deserializer):
                try:
                    lr, m = serializer("hyperparam.lr", None), serializer("hyperparam.momentum", None)
                except KeyError:  # a snapshot from elsewhere
                    lr = m = None
                super().serialize(serializer)
                if lr is not None:
                    self.lr, self.momentum = float(lr), float(m)
                return
            super().serialize(serializer)
            serializer("hyperparam.lr", float(self.lr))
            serializer("hyperparam.momentum", float(self.momentum))

    return _adapter("loader_restores_hyperparameters", Optimizer)


# -- equations ---------------------------------------------------------------------


def momentum_fixed_at_first_update() -> ReferenceAdapter:
    """Each rule reads the momentum once, at its first update, and keeps it."""

    class Rule(CorrectedMomentumSGDRule):
        def update_core(self, param: Any) -> None:
            if "m0" not in self.__dict__:
                self.__dict__["m0"] = float(self.hyperparam.momentum)
            own = self.hyperparam.__dict__
            had, before = "momentum" in own, own.get("momentum")
            own["momentum"] = self.__dict__["m0"]
            try:
                super().update_core(param)
            finally:
                if had:
                    own["momentum"] = before
                else:
                    del own["momentum"]

    return _with_rule_class("momentum_fixed_at_first_update", Rule)


def zero_momentum_drops_the_buffer() -> ReferenceAdapter:
    """As torch.optim.SGD: with momentum 0 no buffer is kept; it restarts at the gradient when momentum returns."""

    class Rule(CorrectedMomentumSGDRule):
        def update_core(self, param: Any) -> None:
            m = float(self.hyperparam.momentum)
            if m != 0.0 and self.__dict__.pop("dropped", False):
                self.state["v"] = self.state["v"] * 0  # so that u = g after this step
            super().update_core(param)
            if m == 0.0:
                self.__dict__["dropped"] = True

    return _with_rule_class("zero_momentum_drops_the_buffer", Rule)


# -- disabled rules and built-in hooks --------------------------------------------------


def disabled_rule_still_counts() -> ReferenceAdapter:
    """A disabled rule skips the arithmetic but still counts the update."""

    class Rule(CorrectedMomentumSGDRule):
        def update(self, param: Any) -> None:
            if not self.enabled:
                self.t += 1
                return
            super().update(param)

    return _with_rule_class("disabled_rule_still_counts", Rule)


def disabled_rule_still_updates() -> ReferenceAdapter:
    """``enabled`` is ignored."""

    class Rule(CorrectedMomentumSGDRule):
        def update(self, param: Any) -> None:
            enabled, self.enabled = self.enabled, True
            try:
                super().update(param)
            finally:
                self.enabled = enabled

    class Optimizer(cr.CorrectedMomentumSGD):
        rule_class = Rule

        def check_update_inputs(self) -> list:
            rules = [p.update_rule for p in self.target.params()]
            flags = [r.enabled for r in rules]
            for r in rules:
                r.enabled = True
            try:
                return super().check_update_inputs()
            finally:
                for r, f in zip(rules, flags, strict=True):
                    r.enabled = f

    return _adapter("disabled_rule_still_updates", Optimizer)


def weight_decay_ignores_loss_scale() -> ReferenceAdapter:
    """WeightDecay adds lambda p to the scaled gradient (an effective rate lambda / s)."""

    class Hook(optimizer_hooks.WeightDecay):
        def __call__(self, rule: Any, param: Any) -> None:
            if param.grad is not None:
                param.grad = param.grad + self.rate * param.array

    return _with_hook("weight_decay_ignores_loss_scale", "WeightDecay", Hook)


def weight_decay_decoupled() -> ReferenceAdapter:
    """WeightDecay decays the parameter itself (p -= lr lambda p, as AdamW does) instead of adding lambda p to the gradient."""

    class Hook(optimizer_hooks.WeightDecay):
        def __call__(self, rule: Any, param: Any) -> None:
            if param.grad is not None:
                param.array = param.array - float(rule.hyperparam.lr) * self.rate * param.array

    return _with_hook("weight_decay_decoupled", "WeightDecay", Hook)


def lasso_as_weight_decay() -> ReferenceAdapter:
    """Lasso adds lambda p (L2) instead of lambda sign(p) (L1)."""

    class Hook(optimizer_hooks.Lasso):
        def __call__(self, rule: Any, param: Any) -> None:
            if param.grad is not None:
                param.grad = param.grad + self.rate * param.array

    return _with_hook("lasso_as_weight_decay", "Lasso", Hook)


def lasso_times_loss_scale() -> ReferenceAdapter:
    """Lasso "fixed" to multiply its rate by the loss scale, as WeightDecay does (Chainer does not)."""

    class Hook(optimizer_hooks.Lasso):
        def __call__(self, rule: Any, param: Any) -> None:
            if param.grad is not None:
                scale = getattr(param, "loss_scale", None) or 1.0
                param.grad = param.grad + self.rate * scale * np.sign(param.array)

    return _with_hook("lasso_times_loss_scale", "Lasso", Hook)


def clipping_per_parameter() -> ReferenceAdapter:
    """GradientClipping clips each parameter's norm, not the global norm."""

    class Hook(optimizer_hooks.GradientClipping):
        def __call__(self, opt: Any) -> None:
            for param in opt.target.params():
                if param.grad is not None:
                    norm = float(np.sqrt(np.sum(param.grad * param.grad)))
                    if norm > self.threshold:
                        param.grad = param.grad * (self.threshold / norm)

    return _with_hook("clipping_per_parameter", "GradientClipping", Hook)


def hard_clipping_symmetric() -> ReferenceAdapter:
    """GradientHardClipping clips to [-upper, upper], ignoring the lower bound."""

    class Hook(optimizer_hooks.GradientHardClipping):
        def __call__(self, rule: Any, param: Any) -> None:
            if param.grad is not None:
                param.grad = np.clip(param.grad, -self.upper_bound, self.upper_bound)

    return _with_hook("hard_clipping_symmetric", "GradientHardClipping", Hook)


def lars_without_decay_term() -> ReferenceAdapter:
    """GradientLARS scales the gradient by the trust ratio but forgets to add weight_decay * p."""

    class Hook(optimizer_hooks.GradientLARS):
        def __call__(self, rule: Any, param: Any) -> None:
            p, g = param.array, param.grad
            if g is None:
                return
            p_norm, g_norm = np.linalg.norm(p), np.linalg.norm(g)
            rate = (
                p_norm / (self.eps + g_norm + self.weight_decay * p_norm) if p_norm > self.threshold else 1.0
            )
            param.grad = (g * rate).astype(g.dtype)

    return _with_hook("lars_without_decay_term", "GradientLARS", Hook)


def noise_given_the_optimizer() -> ReferenceAdapter:
    """GradientNoise passes the optimizer (its t) to the noise function instead of the update rule."""

    class Hook(optimizer_hooks.GradientNoise):
        def __call__(self, rule: Any, param: Any) -> None:
            if param.grad is not None:
                noise = self.noise_func(np, tuple(param.grad.shape), param.grad.dtype, self, _OPT["opt"])
                param.grad = param.grad + noise

    class Optimizer(cr.CorrectedMomentumSGD):
        def update(self, lossfun: Any = None, *args: Any, **kwds: Any) -> None:
            _OPT["opt"] = self
            super().update(lossfun, *args, **kwds)

    adapter = _HooksAdapter("numpy", Optimizer)
    adapter.replaced = {"GradientNoise": Hook}
    adapter.name = "mutant-noise_given_the_optimizer"
    return adapter


_OPT: dict[str, Any] = {}


# -- exactness ---------------------------------------------------------------------


def reassociated_step() -> ReferenceAdapter:
    """``p + (lr m) v - lr g`` instead of ``p + lr (m v - g)``: eq. (9) within tolerance, not Chainer's bits."""

    def step(xp, p, g, v, lr, m):
        kind = p.dtype.type
        new_p = (p + kind(lr * m) * v - kind(lr) * g).astype(p.dtype)
        return new_p, (kind(m) * v - g).astype(v.dtype)

    return _adapter("reassociated_step", _with_rule(step))


def step_in_float64() -> ReferenceAdapter:
    """Each step computed in float64 and rounded once: more accurate than Chainer, so not its bits."""

    def step(xp, p, g, v, lr, m):
        v64 = m * v.astype(np.float64) - g.astype(np.float64)
        return (p.astype(np.float64) + lr * v64).astype(p.dtype), v64.astype(v.dtype)

    return _adapter("step_in_float64", _with_rule(step))


def unscale_by_reciprocal() -> ReferenceAdapter:
    """The loss scale is undone by multiplying by 1/s instead of dividing by s."""

    class Rule(CorrectedMomentumSGDRule):
        def update(self, param: Any) -> None:
            scale = getattr(param, "loss_scale", None)
            if scale is not None and param.grad is not None and self.enabled:
                param.grad = param.grad * param.grad.dtype.type(1.0 / scale)
                param.loss_scale = None
                try:
                    super().update(param)
                finally:
                    param.loss_scale = scale
                return
            super().update(param)

    return _with_rule_class("unscale_by_reciprocal", Rule)


#: Which family must reject which mutant.
KILLS: list[tuple[str, str]] = [
    ("grads_gathered_before_pre_hooks", "test_hooks"),
    ("remove_hook_spares_post_hooks", "test_hooks"),
    ("rule_remove_hook_spares_post_hooks", "test_hooks"),
    ("first_pre_hook_sees_none", "test_hooks"),
    ("rule_pre_hooks_after_update_core", "test_hooks"),
    ("no_post_hooks_on_skipped_step", "test_nan_skipping"),
    ("rule_hooks_on_skipped_step", "test_nan_skipping"),
    ("static_scaling_skips_non_finite", "test_nan_skipping"),
    ("uncapped_after_an_overflow", "test_loss_scaling"),
    ("overflow_test_by_squares", "test_loss_scaling"),
    ("overflow_test_scales_again", "test_loss_scaling"),
    ("epoch_not_restored", "test_serialization"),
    # the old state machine reloaded into the same object, which still had its epoch
    ("epoch_not_restored", "test_state_machine"),
    ("overflow_history_not_saved", "test_serialization"),
    ("loader_restores_hyperparameters", "test_serialization"),
    ("momentum_fixed_at_first_update", "test_equations"),
    ("zero_momentum_drops_the_buffer", "test_equations"),
    ("disabled_rule_still_counts", "test_machinery"),
    ("disabled_rule_still_updates", "test_machinery"),
    ("weight_decay_ignores_loss_scale", "test_machinery"),
    ("weight_decay_decoupled", "test_machinery"),
    ("lasso_as_weight_decay", "test_machinery"),
    ("lasso_times_loss_scale", "test_machinery"),
    ("clipping_per_parameter", "test_machinery"),
    ("hard_clipping_symmetric", "test_machinery"),
    ("lars_without_decay_term", "test_machinery"),
    ("noise_given_the_optimizer", "test_machinery"),
    ("reassociated_step", "test_exactness"),
    ("step_in_float64", "test_exactness"),
    ("unscale_by_reciprocal", "test_exactness"),
]


# -- deviations must not mask other bugs ----------------------------------------------


def torch_set_momentum_ignored() -> Any:
    """The torch adapter with a ``set_momentum`` that does nothing, judged with torch's real deviations file.

    Before issue 13 that file declared the whole state machine a deviation, so
    this reported exactly what real PyTorch reports.
    """
    from corrmom_conformance.adapters.torch_sgd import TorchSGDAdapter, TorchSGDOptimizer
    from corrmom_conformance.deviations import DEVIATIONS_DIR

    class Optimizer(TorchSGDOptimizer):
        def set_momentum(self, momentum: float) -> None:
            pass

    class Adapter(TorchSGDAdapter):
        name = "mutant-torch_set_momentum_ignored"
        expected_deviations = str(DEVIATIONS_DIR / "torch.toml")

        def create(self, params: Any, *, lr: float, momentum: float) -> Optimizer:
            return Optimizer(self._torch, params, lr, momentum)

    return Adapter()


#: Mutants that need a package besides the reference's (skipped where it is missing).
REQUIRES: dict[str, str] = {"torch_set_momentum_ignored": "torch"}

KILLS += [
    ("torch_set_momentum_ignored", "test_state_machine"),
    ("torch_set_momentum_ignored", "test_equations"),
]
