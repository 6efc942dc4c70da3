"""The adapter protocol: what an implementation under test provides to the suite.

An *adapter* is any object with a ``name``, a ``version``, a ``backend``, a
frozenset of ``capabilities`` and a ``make`` method. ``--impl=pkg.mod:factory``
calls ``factory(backend=...)`` (the ``--backend`` option) and uses the adapter
it returns. ``make(params, lr, momentum, fp32_update=False)`` returns a fresh :class:`Run`: one
optimizer set up on named parameters, driven only with host NumPy arrays.

Conventions every adapter follows:

* Parameter names are ``/``-free identifiers; the optimizer visits them in
  sorted order (Chainer's order for a flat link).
* ``step(grads)`` performs one optimizer update with the given *unscaled*
  gradients; a name missing from ``grads`` (or mapped to ``None``) means a
  cleared gradient. When loss scaling is on, the adapter must feed the
  gradients through its scaling mechanism (multiply by the current scale as
  a backward pass would), not around it.
* ``velocity(name)`` returns the momentum state in Chainer's sign convention
  (``v = -u`` of eq. (9)), or ``None`` before the state exists.

A check that needs a feature the adapter does not declare is reported
*not applicable* with the missing capability named, never as a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["CAPABILITIES", "Adapter", "HookSpec", "Run"]

#: Every capability an adapter may declare, with what declaring it promises.
CAPABILITIES: Mapping[str, str] = {
    "eq9": "the update is Goyal et al. eq. (9) (momentum-corrected under changing lr)",
    "state": "velocity(name) exposes the momentum state",
    "chainer_sign": "the exposed state holds v = -u (Chainer's sign)",
    "zero_initial_state": "the momentum state starts at zeros before the first step",
    "cleared_grad_moves": "a parameter whose gradient was cleared still moves by its momentum",
    "per_param_hyperparams": "set_lr/set_momentum accept one parameter's name (an override)",
    "float16_master": "float16 parameters are updated through a float32 master copy",
    "step_counters": "t() counts optimizer steps and rule_t(name) each parameter's updates",
    "dynamic_loss_scaling": "loss_scaling(interval) follows Chainer's dynamic policy",
    "static_loss_scaling": "loss_scaling(scale=s) scales gradients by a fixed s",
    "loss_scaling_validation": "loss_scaling rejects interval < 1 and scale <= 0 with ValueError",
    "nan_skipping": "with dynamic scaling a non-finite gradient skips the whole step, with a warning",
    "serialize": "save(path)/load(path) round-trip the optimizer state",
    "npz_layout": "save writes Chainer's npz keys (t, epoch, <param>/t, <param>/v)",
    "load_chainer_npz": "load reads a snapshot written by Chainer's save_npz",
    "hooks": "add_hook/remove_hook/call_hooks follow Chainer's hook machinery",
    "epochs": "new_epoch() and epoch() as Chainer",
}


class HookSpec(Protocol):
    """A hook as Chainer defines it: a callable with optional attributes."""

    name: str
    timing: str
    call_for_each_param: bool

    def __call__(self, *args: Any) -> None: ...


@runtime_checkable
class Run(Protocol):
    """One optimizer set up on named parameters (see the module docstring)."""

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        """One update with unscaled gradients (missing or ``None``: cleared)."""

    def params(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter, by name."""

    def set_lr(self, lr: float, name: str | None = None) -> None:
        """Set the learning rate (for one parameter if ``name`` is given)."""

    def set_momentum(self, momentum: float, name: str | None = None) -> None:
        """Set the momentum (for one parameter if ``name`` is given)."""

    def velocity(self, name: str) -> np.ndarray | None:
        """The momentum state of one parameter, Chainer's sign, or ``None`` before it exists."""

    def t(self) -> int:
        """Optimizer step count."""

    def rule_t(self, name: str) -> int:
        """Number of updates applied to one parameter."""

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        """Configure loss scaling (dynamic when ``scale`` is ``None``)."""

    def loss_scale(self) -> float | None:
        """The current loss scale, ``None`` without loss scaling."""

    def save(self, path: str) -> None:
        """Write a snapshot of the optimizer state."""

    def load(self, path: str, strict: bool = True) -> None:
        """Read a snapshot into this (freshly made) optimizer."""

    def add_hook(self, hook: Callable[..., Any], name: str | None = None, timing: str = "auto",
                 param: str | None = None) -> None:
        """Register an optimizer hook, or an update-rule hook of parameter ``param``."""

    def remove_hook(self, name: str, param: str | None = None) -> None:
        """Remove a hook by name (of parameter ``param``'s rule if given)."""

    def call_hooks(self, timing: str = "pre") -> None:
        """Call the optimizer hooks of one timing."""

    def new_epoch(self) -> None:
        """Advance the epoch counter."""

    def epoch(self) -> int:
        """The epoch counter."""

    def native(self) -> Any:
        """The underlying optimizer object (for messages and hook arguments)."""


@runtime_checkable
class Adapter(Protocol):
    """What ``--impl`` resolves to."""

    name: str
    version: str
    backend: str
    capabilities: frozenset[str]

    def make(self, params: Mapping[str, np.ndarray], lr: float, momentum: float,
             fp32_update: bool = False) -> Run:
        """A fresh optimizer on copies of ``params`` moved to the backend.

        ``fp32_update`` asks for the float32 master update of float16
        parameters (only meaningful with the ``float16_master`` capability).
        """
