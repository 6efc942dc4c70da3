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

__all__ = ["LOSS_SCALE_MAX", "LOSS_SCALE_MIN", "growth_multiplier", "next_loss_scale"]

#: The largest finite float16, Chainer's ceiling for the scale.
LOSS_SCALE_MAX = 65504.0
#: Chainer's floor for the scale.
LOSS_SCALE_MIN = 1.0


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
