r"""Chainer's loss scaling, used the way ``torch.amp.GradScaler`` is.

.. code-block:: python

    scaler.scale(loss).backward()
    scaler.step(optimizer)      # unscale inside the step; skip it on a non-finite gradient
    scaler.update()             # move the scale

Dynamic scaling (``scale=None``) follows
:func:`corrmom_ref.loss_scaling.next_loss_scale`: it starts at 1, doubles
after every step until the first non-finite gradient ever, halves on every
step with one (that step is skipped, but the optimizer's ``t`` advances),
and afterwards grows by :math:`2^{1/\mathrm{interval}}` per clean step (it
doubles once per ``interval`` clean steps), within ``[1, 65504]``. A static
scale never moves and never skips. Unlike Chainer, the state is saved
(:meth:`~corrmom_ref.torch.LossScaler.state_dict`), so a resumed run continues the same scale
sequence.

The state and its checks are the reference's
(:class:`corrmom_ref.loss_scaling.LossScaling`): the constructor, :meth:`~corrmom_ref.torch.LossScaler.update`
and :meth:`~corrmom_ref.torch.LossScaler.load_state_dict` refuse what :meth:`corrmom_ref.Optimizer.loss_scaling`
and a reference snapshot refuse, with the same messages, before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from corrmom_ref.loss_scaling import (
    KEYS,
    LossScaling,
    SavedLossScaling,
    check_interval_argument,
    check_scale_argument,
)

__all__ = ["LossScaler"]


class LossScaler:
    """Chainer's dynamic (or static) loss scale for :mod:`corrmom_ref.torch` optimizers.

    Args:
        interval: Dynamic scaling doubles the scale once per ``interval`` clean
            steps after the first overflow (Chainer's default 1000). Checked
            with a static scale too, since :meth:`state_dict` records it.
        scale: A fixed scale (static scaling); ``None``: dynamic, starting at 1.
        enabled: ``False`` makes every method a pass-through (scale 1, no checks).

    Raises:
        ValueError: ``interval`` is not an integer in ``[1, 2**63 - 1]``
            (``interval: expected an integer, got 1.5 (float)``), or ``scale``
            is not a real number in ``[2**-126, 2**126]`` (``inf``, NaN, ``0``,
            ``'2'``, a bool: ``loss scale: ...``), as
            :meth:`corrmom_ref.Optimizer.loss_scaling` refuses them.
    """

    def __init__(self, interval: int = 1000, scale: float | None = None, *, enabled: bool = True) -> None:
        checked_interval = check_interval_argument(interval)
        checked_scale = 1.0 if scale is None else check_scale_argument(scale)
        self._enabled = bool(enabled)
        self._state = LossScaling()
        self._state.restore(SavedLossScaling(scale is None, checked_scale, checked_interval, False))
        self._stepped: dict[int, bool] = {}  # id(optimizer) -> skipped, since the last update()
        self._unscaled: set[int] = set()

    # -- GradScaler's vocabulary -----------------------------------------------------

    def is_enabled(self) -> bool:
        """Whether scaling is on."""
        return self._enabled

    @property
    def dynamic(self) -> bool:
        """Whether the scale follows Chainer's dynamic rule."""
        return self._state.dynamic

    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return float(self._state.scale) if self._enabled else 1.0

    def scale(self, outputs: Any) -> Any:
        """``outputs`` (a tensor, or lists/tuples of them) times the current scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, torch.Tensor):
            return outputs * self._state.scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(f"scale() takes tensors or lists/tuples of them, got {type(outputs).__name__}")

    def unscale_(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the scale now, in place (e.g. before clipping them yourself).

        The following :meth:`step` then passes no scale. Chainer divides
        inside the update, after the optimizer's pre hooks; with this call
        those hooks see unscaled gradients.

        Raises:
            RuntimeError: already called for this optimizer since the last :meth:`update`.
        """
        if not self._enabled:
            return
        if id(optimizer) in self._unscaled:
            raise RuntimeError("unscale_() was already called on this optimizer since the last update()")
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.div_(self._state.scale)
        self._unscaled.add(id(optimizer))

    def step(self, optimizer: Any, closure: Callable[[], Any] | None = None) -> Any:
        """``optimizer.step`` with the scale to divide by, skipping on a non-finite gradient when dynamic.

        Returns what the step returns (the closure's loss, if any).
        """
        if not self._enabled:
            return optimizer.step(closure)
        if id(optimizer) in self._stepped:
            raise RuntimeError("step() was already called on this optimizer since the last update()")
        unscaled = id(optimizer) in self._unscaled
        if not unscaled and self._state.dynamic:
            hooks = getattr(optimizer, "_chainer_hooks", None)  # the optimizer's pre hooks
            if hooks is not None:
                self._state.warn_clipping(hooks.of("pre"), recipe=TORCH_RECIPE, stacklevel=2)
        scale = None if unscaled else self._state.scale
        out = optimizer.step(closure, loss_scale=scale, check_finite=self._state.dynamic)
        self._stepped[id(optimizer)] = bool(optimizer.last_step_skipped)
        return out

    def update(self, new_scale: float | None = None) -> None:
        """Move the dynamic scale once, after this iteration's :meth:`step` calls; or set ``new_scale``.

        The scale halves if any optimizer skipped, else grows (see the module
        docstring). A static scale stays.

        Raises:
            RuntimeError: dynamic, no ``new_scale``, and no :meth:`step` since the last update.
            ValueError: ``new_scale`` is not a loss scale (as for the constructor's ``scale``).
        """
        if not self._enabled:
            return
        try:
            if new_scale is not None:
                self._state.scale = check_scale_argument(new_scale)
                return
            if not self._state.dynamic:
                return
            if not self._stepped:
                raise RuntimeError("update() without a step() since the last update()")
            self._state.record(any(self._stepped.values()))
            self._state.advance()
        finally:
            self._stepped.clear()
            self._unscaled.clear()

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``scale``, ``dynamic``, ``interval``, ``nonfinite_ever`` (empty when disabled)."""
        if not self._enabled:
            return {}
        state = self._state
        return {
            "scale": float(state.scale),
            "dynamic": state.dynamic,
            "interval": state.interval,
            "nonfinite_ever": state.nonfinite_ever,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, checked as a reference snapshot's
        ``loss_scaling.*`` keys are (:meth:`corrmom_ref.loss_scaling.LossScaling.read_entries`).

        Raises:
            KeyError: some keys are there and one is missing (named).
            TypeError, ValueError: a value of the wrong kind or out of range
                (``dynamic=0.0``, ``scale=inf``, ``interval=2**64-1``, ...; named).
            RuntimeError: loading a non-empty state into a disabled scaler.

        Nothing changes when it raises.
        """
        if not state_dict:
            return
        if not self._enabled:
            raise RuntimeError("a disabled LossScaler cannot load a saved scale")
        unknown = sorted(set(state_dict) - set(KEYS), key=str)
        if unknown:
            raise KeyError(f"LossScaler.load_state_dict: unknown key {unknown[0]!r}")
        saved = LossScaling.read_entries(state_dict, keys={name: name for name in KEYS})
        for name in KEYS:  # a LossScaler's state has all four
            if name not in state_dict:
                raise KeyError(f"LossScaler.load_state_dict: {name!r} is missing")
        assert saved is not None and saved.interval is not None
        self._state.restore(
            SavedLossScaling(saved.dynamic, float(saved.scale), saved.interval, saved.nonfinite_ever)
        )


#: How to clip the true gradients with :mod:`corrmom_ref.torch` (see ``docs/porting.md``).
TORCH_RECIPE = (
    "call scaler.unscale_(optimizer) and then torch.nn.utils.clip_grad_norm_(params, threshold) "
    "(or clip_grad_value_) before scaler.step(optimizer), instead of the hook"
)
