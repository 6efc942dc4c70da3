r"""Learning-rate policies of Goyal et al. (2017): linear scaling, gradual warm-up, step decay.

**Linear scaling rule** (sec. 2.1): when the minibatch grows from a reference
size :math:`n` to :math:`kn`, multiply the learning rate by :math:`k`,

.. math::

    \eta(kn) = \eta(n)\,\frac{kn}{n}.

**Gradual warm-up** (sec. 2.2): start at the reference rate
:math:`\eta_0` and raise it linearly to the scaled rate :math:`\hat\eta` over
the first :math:`T_w` iterations,

.. math::

    \eta_t = \eta_0 + (\hat\eta - \eta_0)\,\frac{t}{T_w}, \quad 0 \le t < T_w,
    \qquad \eta_t = \hat\eta, \quad t \ge T_w.

**Step decay**: multiply by :math:`\gamma` (0.1 in the paper) at each
boundary :math:`b_1 < b_2 < \dots`: :math:`\eta_t = \hat\eta\,\gamma^{\#\{i: b_i \le t\}}`.

**Why momentum correction matters here** (sec. 3). Momentum SGD in the form
of eq. (9), :math:`u_{t+1} = m u_t + g_t`, :math:`w_{t+1} = w_t - \eta_{t+1}
u_{t+1}` (:class:`~corrmom_ref.CorrectedMomentumSGD`), and in the form of
eq. (10), :math:`v_{t+1} = m v_t + \eta_{t+1} g_t`, :math:`w_{t+1} = w_t -
v_{t+1}` (:class:`~corrmom_ref.MomentumSGD`), agree only while :math:`\eta`
is constant. During warm-up :math:`\eta` changes every iteration and at each
decay boundary by a factor :math:`\gamma`; eq. (10) then keeps momentum
accumulated at the old rate, which eq. (9) corrects by construction
(equivalently eq. (10) with :math:`v_t` multiplied by
:math:`\eta_{t+1}/\eta_t`).

Policies are plain functions of the iteration count :math:`t` (the
optimizer's ``t`` before the step, 0 on the first step). :class:`LrSchedule`
is an optimizer hook that sets ``optimizer.lr`` from one; it works with any
optimizer of ours (an ``lr`` hyperparameter) and with a
:class:`~corrmom_ref.distributed.MultiNodeOptimizer`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LrSchedule", "goyal_schedule", "gradual_warmup", "linear_scaling", "step_decay"]

Schedule = Callable[[int], float]


def linear_scaling(base_lr: float, batch_size: int, reference_batch_size: int = 256) -> float:
    r"""The linear scaling rule: :math:`\eta_0 \cdot \text{batch\_size} / \text{reference\_batch\_size}`.

    Goyal et al. use :math:`\eta_0 = 0.1` for a reference batch of 256.
    """
    if batch_size <= 0 or reference_batch_size <= 0:
        raise ValueError("batch sizes must be positive")
    return base_lr * batch_size / reference_batch_size


def gradual_warmup(t: int, target_lr: float, warmup_iterations: int, start_lr: float) -> float:
    r"""Linear warm-up from ``start_lr`` at :math:`t=0` to ``target_lr`` at :math:`t=T_w`, then flat."""
    if warmup_iterations < 0:
        raise ValueError("warmup_iterations must be >= 0")
    if t >= warmup_iterations:
        return target_lr
    return start_lr + (target_lr - start_lr) * t / warmup_iterations


def step_decay(t: int, lr: float, boundaries: Sequence[int], factor: float = 0.1) -> float:
    r""":math:`\text{lr} \cdot \text{factor}^{j}` with :math:`j` the number of boundaries :math:`\le t`."""
    if list(boundaries) != sorted(boundaries):
        raise ValueError("boundaries must be increasing")
    return lr * factor ** bisect_right(list(boundaries), t)


def goyal_schedule(
    base_lr: float,
    batch_size: int,
    reference_batch_size: int = 256,
    warmup_iterations: int = 0,
    boundaries: Sequence[int] = (),
    factor: float = 0.1,
) -> Schedule:
    r"""The paper's recipe as one schedule :math:`t \mapsto \eta_t`.

    Warm-up from ``base_lr`` to the linearly scaled rate, then step decay
    of the scaled rate at ``boundaries`` (iterations counted from 0, warm-up
    included).
    """
    target = linear_scaling(base_lr, batch_size, reference_batch_size)

    def schedule(t: int) -> float:
        return step_decay(t, gradual_warmup(t, target, warmup_iterations, base_lr), boundaries, factor)

    return schedule


class LrSchedule:
    """Optimizer pre hook: ``optimizer.lr = schedule(optimizer.t)`` before every step.

    Register with ``optimizer.add_hook(LrSchedule(schedule))``. Pre hooks run
    before ``t`` is incremented, so the first step uses ``schedule(0)``.
    """

    name = "LrSchedule"
    timing = "pre"
    call_for_each_param = False

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def __call__(self, optimizer: Any) -> None:
        optimizer.lr = self.schedule(optimizer.t)
