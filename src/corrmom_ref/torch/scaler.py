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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from corrmom_ref.loss_scaling import LOSS_SCALE_MAX, growth_multiplier, next_loss_scale

__all__ = ["LossScaler"]


class LossScaler:
    """Chainer's dynamic (or static) loss scale for :mod:`corrmom_ref.torch` optimizers.

    Args:
        interval: Dynamic scaling doubles the scale once per ``interval`` clean
            steps after the first overflow (Chainer's default 1000).
        scale: A fixed scale (static scaling); ``None``: dynamic, starting at 1.
        enabled: ``False`` makes every method a pass-through (scale 1, no checks).

    Raises:
        ValueError: ``interval < 1`` (dynamic) or ``scale <= 0`` (static).
    """

    def __init__(self, interval: int = 1000, scale: float | None = None, *, enabled: bool = True) -> None:
        if scale is None:
            if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
                raise ValueError(f"interval must be an integer >= 1, got {interval!r}")
        elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"loss scale must be a positive number, got {scale!r}")
        self._enabled = bool(enabled)
        self._dynamic = scale is None
        self._interval = int(interval)
        self._scale = 1.0 if scale is None else float(scale)
        self._nonfinite_ever = False
        self._stepped: dict[int, bool] = {}  # id(optimizer) -> skipped, since the last update()
        self._unscaled: set[int] = set()

    # -- GradScaler's vocabulary -----------------------------------------------------

    def is_enabled(self) -> bool:
        """Whether scaling is on."""
        return self._enabled

    @property
    def dynamic(self) -> bool:
        """Whether the scale follows Chainer's dynamic rule."""
        return self._dynamic

    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def scale(self, outputs: Any) -> Any:
        """``outputs`` (a tensor, or lists/tuples of them) times the current scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, torch.Tensor):
            return outputs * self._scale
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
                        p.grad.div_(self._scale)
        self._unscaled.add(id(optimizer))

    def step(self, optimizer: Any, closure: Callable[[], Any] | None = None) -> Any:
        """``optimizer.step`` with the scale to divide by, skipping on a non-finite gradient when dynamic.

        Returns what the step returns (the closure's loss, if any).
        """
        if not self._enabled:
            return optimizer.step(closure)
        if id(optimizer) in self._stepped:
            raise RuntimeError("step() was already called on this optimizer since the last update()")
        scale = None if id(optimizer) in self._unscaled else self._scale
        out = optimizer.step(closure, loss_scale=scale, check_finite=self._dynamic)
        self._stepped[id(optimizer)] = bool(optimizer.last_step_skipped)
        return out

    def update(self, new_scale: float | None = None) -> None:
        """Move the dynamic scale once, after this iteration's :meth:`step` calls; or set ``new_scale``.

        The scale halves if any optimizer skipped, else grows (see the module
        docstring). A static scale stays.

        Raises:
            RuntimeError: dynamic, no ``new_scale``, and no :meth:`step` since the last update.
        """
        if not self._enabled:
            return
        try:
            if new_scale is not None:
                if not new_scale > 0:
                    raise ValueError(f"new_scale must be positive, got {new_scale!r}")
                self._scale = float(new_scale)
                return
            if not self._dynamic:
                return
            if not self._stepped:
                raise RuntimeError("update() without a step() since the last update()")
            overflow = any(self._stepped.values())
            self._nonfinite_ever = self._nonfinite_ever or overflow
            self._scale = next_loss_scale(
                self._scale,
                nonfinite_now=overflow,
                nonfinite_ever=self._nonfinite_ever,
                multiplier=growth_multiplier(self._interval),
                max_scale=LOSS_SCALE_MAX,
            )
        finally:
            self._stepped.clear()
            self._unscaled.clear()

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``scale``, ``dynamic``, ``interval``, ``nonfinite_ever`` (empty when disabled)."""
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "dynamic": self._dynamic,
            "interval": self._interval,
            "nonfinite_ever": self._nonfinite_ever,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            KeyError: a key is missing (nothing is changed then).
            RuntimeError: loading a non-empty state into a disabled scaler.
        """
        if not state_dict:
            return
        if not self._enabled:
            raise RuntimeError("a disabled LossScaler cannot load a saved scale")
        scale, dynamic = float(state_dict["scale"]), bool(state_dict["dynamic"])
        interval, ever = int(state_dict["interval"]), bool(state_dict["nonfinite_ever"])
        self._scale, self._dynamic, self._interval, self._nonfinite_ever = scale, dynamic, interval, ever
