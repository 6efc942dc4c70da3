"""Wrong implementations (mutants) of CorrectedMomentumSGD, as ``--impl=tests.mutants:NAME`` adapters.

Each factory returns the Chainer-style adapter over corrmom_ref with one
deliberate bug, which also exercises the suite's ``module:factory`` path.
``tests/test_mutants.py`` runs the suite against each and asserts that the
family meant to catch the bug fails.
"""

from __future__ import annotations

import math
from typing import Any

import corrmom_ref as cr
from corrmom_ref.optimizers.corrected_momentum_sgd import CorrectedMomentumSGDRule

from conformance.adapters.chainer_style import ChainerStyleAdapter, ref


def _rule(step: Any) -> type[cr.CorrectedMomentumSGD]:
    """An optimizer whose rule uses ``step(xp, p, g, v, lr, m) -> (p, v)``."""
    rule = type("MutantRule", (CorrectedMomentumSGDRule,), {"step": staticmethod(step)})
    return type("MutantSGD", (cr.CorrectedMomentumSGD,), {"rule_class": rule})


def _adapter(name: str, optimizer_class: Any, backend: str) -> ChainerStyleAdapter:
    return ref(backend=backend, optimizer_class=optimizer_class, name=f"mutant-{name}")


# -- family 1: equations ---------------------------------------------------------


def eq10_uncorrected(backend: str = "numpy") -> ChainerStyleAdapter:
    """eq. (10) without the correction (Chainer's MomentumSGD): wrong once lr changes."""
    return _adapter("eq10", cr.MomentumSGD, backend)


def momentum_after_step(backend: str = "numpy") -> ChainerStyleAdapter:
    """The parameter moves by the old momentum, then the momentum is updated."""
    def step(xp: Any, p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any]:
        return p + lr * v, m * v - g
    return _adapter("after", _rule(step), backend)


def wrong_sign(backend: str = "numpy") -> ChainerStyleAdapter:
    """State holds +u instead of Chainer's -u (same parameters, incompatible snapshots)."""
    def step(xp: Any, p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any]:
        v = m * v + g
        return p - lr * v, v
    return _adapter("sign", _rule(step), backend)


class _NoRealloc(cr.CorrectedMomentumSGD):
    def reallocate_cleared_grads(self) -> None:
        return None


def cleared_grad_skipped(backend: str = "numpy") -> ChainerStyleAdapter:
    """A parameter without a gradient does not move (no reallocation)."""
    return _adapter("noalloc", _NoRealloc, backend)


# -- family 2: hooks -------------------------------------------------------------


class _ReversedHooks(cr.CorrectedMomentumSGD):
    def call_hooks(self, timing: Any = "pre") -> None:
        for hook in reversed(list(self._registry().of(timing))):
            self.call_hook(hook)


def hooks_reversed(backend: str = "numpy") -> ChainerStyleAdapter:
    """Optimizer hooks called in reverse registration order."""
    return _adapter("reversed", _ReversedHooks, backend)


class _OncePerParam(cr.CorrectedMomentumSGD):
    def call_hook(self, hook: Any) -> None:
        if getattr(hook, "call_for_each_param", False):
            param = next(iter(self.target.params()))
            hook(param.update_rule, param)
        else:
            hook(self)
        self.reallocate_cleared_grads()


def per_param_hook_once(backend: str = "numpy") -> ChainerStyleAdapter:
    """A per-parameter hook is called for the first parameter only."""
    return _adapter("once", _OncePerParam, backend)


# -- family 3: loss scaling ------------------------------------------------------


class _SlowDoubling(cr.CorrectedMomentumSGD):
    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        super().loss_scaling(interval, scale)
        if scale is None:
            self._loss_scaling_multiplier = math.pow(2.0, 1.0 / (interval + 1))


def doubling_interval_plus_one(backend: str = "numpy") -> ChainerStyleAdapter:
    """After an overflow the scale doubles every interval + 1 clean steps."""
    return _adapter("slow", _SlowDoubling, backend)


class _NoClamp(cr.CorrectedMomentumSGD):
    _loss_scale_max = math.inf

    def update_loss_scale(self) -> None:
        if self._loss_scaling_is_dynamic:
            before = self._loss_scale
            super().update_loss_scale()
            if self._loss_scaling_isnan:
                self._loss_scale = before * 0.5


def no_clamp(backend: str = "numpy") -> ChainerStyleAdapter:
    """The dynamic scale is not clamped to [1, 65504]."""
    return _adapter("noclamp", _NoClamp, backend)


# -- family 4: NaN skipping ------------------------------------------------------


class _NoSkip(cr.CorrectedMomentumSGD):
    def is_safe_to_update(self) -> bool:
        return True


def nan_not_skipped(backend: str = "numpy") -> ChainerStyleAdapter:
    """A non-finite gradient does not skip the step."""
    return _adapter("noskip", _NoSkip, backend)


class _NoTickOnSkip(cr.CorrectedMomentumSGD):
    def update(self, lossfun: Any = None, *args: Any, **kwds: Any) -> None:
        super().update(lossfun, *args, **kwds)
        if not super().is_safe_to_update():
            self.t -= 1


def t_not_advanced_on_skip(backend: str = "numpy") -> ChainerStyleAdapter:
    """The optimizer's t does not advance on a skipped step."""
    return _adapter("notick", _NoTickOnSkip, backend)


# -- family 5: serialization -----------------------------------------------------


class _ForgetfulRule(CorrectedMomentumSGDRule):
    def apply_loaded(self, loaded: tuple[int, dict[str, Any] | None]) -> None:
        self.t = loaded[0]


class _Forgetful(cr.CorrectedMomentumSGD):
    rule_class = _ForgetfulRule


def state_not_restored(backend: str = "numpy") -> ChainerStyleAdapter:
    """Loading restores t but not the momentum state."""
    return _adapter("forget", _Forgetful, backend)


class _NoCounters(cr.CorrectedMomentumSGD):
    def serialize(self, serializer: Any) -> None:
        t = self.t
        super().serialize(serializer)
        self.t = t


def t_not_restored(backend: str = "numpy") -> ChainerStyleAdapter:
    """Loading does not restore the optimizer's t."""
    return _adapter("not", _NoCounters, backend)
