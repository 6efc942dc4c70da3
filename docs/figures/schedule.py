"""The learning-rate schedule and problem the trajectory figure uses.

Goyal et al.'s recipe in miniature: the linear scaling rule takes the base
rate ``BASE_LR`` to ``K * BASE_LR`` for a ``K`` times larger minibatch, gradual
warm-up climbs there linearly over ``WARMUP`` steps, then the rate is divided
by 10 at each step of ``DECAY_AT``.
"""

from __future__ import annotations

BASE_LR = 0.05
K = 8
WARMUP = 20
DECAY_AT = (60, 90)
STEPS = 120
MOMENTUM = 0.9
#: Curvatures of the quadratic f(w) = sum_i CURVATURE[i] * w_i**2 / 2.
CURVATURE = (1.0, 0.05)
W0 = (1.0, 1.0)


def lr_at(step: int) -> float:
    """The rate for update number ``step`` (0-based): warm-up, then step decay."""
    if step < WARMUP:
        return BASE_LR + (K * BASE_LR - BASE_LR) * step / WARMUP
    return K * BASE_LR * 0.1 ** sum(step >= s for s in DECAY_AT)
