r"""Chainer's dynamic loss-scaling policy, as a pure function.

With dynamic scaling the loss is multiplied by a scale :math:`s` before
backward, and every gradient is divided by :math:`s` before the update. After
each :meth:`~corrmom_ref.Optimizer.update` the scale moves:

.. math::

    s \leftarrow \operatorname{clip}\bigl(s \cdot f,\ 1,\ 65504\bigr), \qquad
    f = \begin{cases}
        1/2 & \text{a gradient of this step was not finite,}\\
        2 & \text{no gradient was ever non-finite,}\\
        2^{1/\mathrm{interval}} & \text{otherwise,}
    \end{cases}

so the scale doubles every step until the first overflow, halves on every
overflow, and afterwards doubles once per ``interval`` clean steps. It starts
at 1 and is clamped to ``[1, 65504]`` (the largest finite float16).
"""

from __future__ import annotations

import math

__all__ = [
    "LOSS_SCALE_MAX",
    "LOSS_SCALE_MIN",
    "NonFiniteGradientWarning",
    "growth_multiplier",
    "next_loss_scale",
]

#: The largest finite float16, Chainer's ceiling for the scale.
LOSS_SCALE_MAX = 65504.0
#: Chainer's floor for the scale.
LOSS_SCALE_MIN = 1.0


class NonFiniteGradientWarning(UserWarning):
    """Warned when dynamic loss scaling finds a non-finite gradient and skips the step.

    The message names the parameter and nothing that changes from step to
    step, so Python's warnings registry (one entry per distinct message and
    code location) holds at most one entry per parameter however many steps
    are skipped, and the default filter prints each parameter's first
    overflow once. The step and the scale are attributes.

    Args:
        path: The parameter's path (``/l1/W``).
        iteration: The optimizer's ``t`` before the skipped step.
        loss_scale: The loss scale the gradient was computed with.

    Attributes:
        path: As given.
        iteration: As given.
        loss_scale: As given.
    """

    def __init__(self, path: str, iteration: int, loss_scale: float | None) -> None:
        super().__init__(
            f"Non finite number found in param.grad of {path}: dynamic loss scaling skips the "
            f"step (the warning's iteration and loss_scale attributes say which step and scale)"
        )
        self.path = path
        self.iteration = iteration
        self.loss_scale = loss_scale

    def __reduce__(self) -> tuple[type, tuple[str, int, float | None]]:
        return type(self), (self.path, self.iteration, self.loss_scale)


def growth_multiplier(interval: int) -> float:
    """The per-clean-step factor :math:`2^{1/\\mathrm{interval}}` (computed as Chainer does)."""
    return math.pow(2.0, 1.0 / interval)


def next_loss_scale(
    scale: float,
    *,
    nonfinite_now: bool,
    nonfinite_ever: bool,
    multiplier: float,
    max_scale: float = LOSS_SCALE_MAX,
) -> float:
    """The scale after one update (see the module docstring)."""
    if nonfinite_now:
        factor = 0.5
    elif nonfinite_ever:
        factor = multiplier
    else:
        factor = 2.0
    return max(LOSS_SCALE_MIN, min(max_scale, scale * factor))
