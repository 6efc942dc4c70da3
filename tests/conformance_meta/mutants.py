"""Wrong implementations the conformance suite must reject.

Each is the reference with one deliberate bug, exposed as an adapter factory
(``--impl=tests.conformance_meta.mutants:<name>``), which also exercises the
suite's ``module:factory`` route.
"""

from __future__ import annotations

from typing import Any

import corrmom_ref as cr
from corrmom_conformance.adapters.reference import ReferenceAdapter
from corrmom_ref import loss_scaling as ls
from corrmom_ref.optimizers.corrected_momentum_sgd import CorrectedMomentumSGDRule


def _adapter(name: str, optimizer_class: type) -> ReferenceAdapter:
    adapter = ReferenceAdapter("numpy", optimizer_class)
    adapter.name = f"mutant-{name}"
    return adapter


def _with_rule(step: Any) -> type:
    """A CorrectedMomentumSGD whose rules use ``step`` for the arithmetic."""
    rule_class = type("MutantRule", (CorrectedMomentumSGDRule,), {"step": staticmethod(step)})
    return type("MutantOptimizer", (cr.CorrectedMomentumSGD,), {"rule_class": rule_class})


# -- equations -----------------------------------------------------------------


def uncorrected() -> ReferenceAdapter:
    """Eq. (10) without the correction factor (Chainer's MomentumSGD)."""
    return _adapter("uncorrected", cr.MomentumSGD)


def momentum_after_step() -> ReferenceAdapter:
    """The parameter moves with the old buffer; the buffer is updated afterwards."""

    def step(xp, p, g, v, lr, m):
        return p + lr * v, m * v - g

    return _adapter("momentum_after_step", _with_rule(step))


def wrong_state_sign() -> ReferenceAdapter:
    """Same parameters, but the buffer holds +u instead of Chainer's -u."""

    def step(xp, p, g, v, lr, m):
        v = m * v + g
        return p - lr * v, v

    return _adapter("wrong_state_sign", _with_rule(step))


def override_ignored() -> ReferenceAdapter:
    """Per-parameter overrides are ignored: every rule reads the optimizer's values."""

    class Rule(CorrectedMomentumSGDRule):
        def update_core(self, param: Any) -> None:
            own = dict(self.hyperparam.__dict__)
            for key in ("lr", "momentum"):
                self.hyperparam.__dict__.pop(key, None)
            try:
                super().update_core(param)
            finally:
                self.hyperparam.__dict__.update(own)

    return _adapter("override_ignored", type("O", (cr.CorrectedMomentumSGD,), {"rule_class": Rule}))


def cleared_gradient_frozen() -> ReferenceAdapter:
    """Cleared gradients are not reallocated, so such a parameter does not move."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def reallocate_cleared_grads(self) -> None:
            pass

    return _adapter("cleared_gradient_frozen", Optimizer)


# -- hooks ---------------------------------------------------------------------


def hooks_reversed() -> ReferenceAdapter:
    """Hooks of one timing run in reverse registration order."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def call_hooks(self, timing: str = "pre") -> None:
            for hook in reversed(list(self._registry().of(timing))):
                self.call_hook(hook)

    return _adapter("hooks_reversed", Optimizer)


def per_param_hook_once() -> ReferenceAdapter:
    """A per-parameter hook is called for the first parameter only."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def call_hook(self, hook: Any) -> None:
            if getattr(hook, "call_for_each_param", False):
                param = next(iter(self.target.params()))
                hook(param.update_rule, param)
                self.reallocate_cleared_grads()
            else:
                super().call_hook(hook)

    return _adapter("per_param_hook_once", Optimizer)


def no_reallocation_after_hooks() -> ReferenceAdapter:
    """Gradients cleared by a hook stay None for the next hook."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def call_hook(self, hook: Any) -> None:
            cr.Optimizer.call_hook(self, hook)

    return _adapter("no_reallocation_after_hooks", Optimizer)


# -- loss scaling ----------------------------------------------------------------


def interval_plus_one() -> ReferenceAdapter:
    """The scale doubles every interval + 1 clean steps."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
            super().loss_scaling(interval, scale)
            if scale is None:
                self._loss_scaling.multiplier = ls.growth_multiplier(interval + 1)

    return _adapter("interval_plus_one", Optimizer)


def no_clamp() -> ReferenceAdapter:
    """The scale is not clamped to [1, 65504]."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def update_loss_scale(self) -> None:
            scaling = self._loss_scaling
            if not scaling.dynamic:
                return
            if scaling.nonfinite_now:
                scaling.scale *= 0.5
            elif scaling.nonfinite_ever:
                scaling.scale *= scaling.multiplier
            else:
                scaling.scale *= 2.0

    return _adapter("no_clamp", Optimizer)


# -- NaN skipping ----------------------------------------------------------------


def nan_not_skipped() -> ReferenceAdapter:
    """A step with a non-finite gradient is applied anyway."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def is_safe_to_update(self) -> bool:
            return True

    return _adapter("nan_not_skipped", Optimizer)


def t_frozen_on_skip() -> ReferenceAdapter:
    """A skipped step does not advance the optimizer's t."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def update(self, lossfun: Any = None, *args: Any, **kwds: Any) -> None:
            super().update(lossfun, *args, **kwds)
            if self._loss_scaling.nonfinite_now:
                self.t -= 1

    return _adapter("t_frozen_on_skip", Optimizer)


# -- serialization ---------------------------------------------------------------


def state_not_restored() -> ReferenceAdapter:
    """Loading restores the counters but keeps the rules' current state."""

    class Rule(CorrectedMomentumSGDRule):
        def apply_loaded(self, loaded: Any) -> None:
            self.t = loaded[0]

    return _adapter("state_not_restored", type("O", (cr.CorrectedMomentumSGD,), {"rule_class": Rule}))


def loss_scale_not_saved() -> ReferenceAdapter:
    """The loss-scaling state is not saved (as in Chainer)."""

    class Optimizer(cr.CorrectedMomentumSGD):
        def _save_loss_scaling(self, serializer: Any) -> None:
            pass

    return _adapter("loss_scale_not_saved", Optimizer)


# -- fast paths ----------------------------------------------------------------


def _broken_fast_path(name: str, fast_step: Any) -> ReferenceAdapter:
    """The reference on NumPy, whose step runs ``fast_step`` while fast paths are on.

    NumPy's native kernel (none, or the Numba loop where Numba is installed)
    is declared bitwise, so the adapter demands bitwise agreement with the
    generic variant (``use_fast_paths(False)``); ``fast_step`` stands in for a
    native kernel that gets the arithmetic slightly wrong.
    """
    from corrmom_ref._step import policy, switch

    def step(xp, p, g, v, lr, m):
        if switch.current().enabled:  # the switch use_fast_paths flips
            return fast_step(xp, p, g, v, lr, m)
        return policy.dispatched_corrected_step(xp, p, g, v, lr, m)

    return _adapter(name, _with_rule(step))


def fast_path_one_ulp_off() -> ReferenceAdapter:
    """The fast path's parameter is one ulp above the generic step's."""
    import numpy as np

    from corrmom_ref._step import policy

    def fast_step(xp, p, g, v, lr, m):
        p, v = policy.dispatched_corrected_step(xp, p, g, v, lr, m)
        return np.nextafter(p, np.inf).astype(p.dtype), v

    return _broken_fast_path("fast_path_one_ulp_off", fast_step)


def fast_path_fused_but_claims_bitwise() -> ReferenceAdapter:
    """The fast path rounds ``p + lr * v`` once (a fused multiply-add) on a backend promised bitwise."""
    import numpy as np

    def fast_step(xp, p, g, v, lr, m):
        v = (m * v - g).astype(v.dtype)
        return (p.astype(np.float64) + lr * v.astype(np.float64)).astype(p.dtype), v

    return _broken_fast_path("fast_path_fused_but_claims_bitwise", fast_step)


#: Which family (check module) must reject which mutant.
KILLS: list[tuple[str, str]] = [
    ("uncorrected", "test_equations"),
    ("momentum_after_step", "test_equations"),
    ("wrong_state_sign", "test_equations"),
    ("override_ignored", "test_equations"),
    ("cleared_gradient_frozen", "test_equations"),
    ("hooks_reversed", "test_hooks"),
    ("per_param_hook_once", "test_hooks"),
    ("no_reallocation_after_hooks", "test_hooks"),
    ("interval_plus_one", "test_loss_scaling"),
    ("no_clamp", "test_loss_scaling"),
    ("nan_not_skipped", "test_nan_skipping"),
    ("t_frozen_on_skip", "test_nan_skipping"),
    ("state_not_restored", "test_serialization"),
    ("loss_scale_not_saved", "test_serialization"),
    ("wrong_state_sign", "test_serialization"),
    ("fast_path_one_ulp_off", "test_fast_paths"),
    ("fast_path_fused_but_claims_bitwise", "test_fast_paths"),
    # the state machine's kills need only its commonest rules (steps, lr changes, cleared
    # gradients), so a small fixed-seed budget finds them every time
    ("uncorrected", "test_state_machine"),
    ("momentum_after_step", "test_state_machine"),
    ("cleared_gradient_frozen", "test_state_machine"),
]


def no_clamp_declared() -> ReferenceAdapter:
    """:func:`no_clamp` with the deviations file named by ``CORRMOM_TEST_DEVIATIONS``.

    For the meta-test of expected deviations (declared, now passing, stale).
    """
    import os

    adapter = no_clamp()
    adapter.expected_deviations = os.environ["CORRMOM_TEST_DEVIATIONS"]
    return adapter
