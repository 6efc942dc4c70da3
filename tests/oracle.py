r"""An exact model of the two momentum updates and of dynamic loss scaling.

Written from the equations, not from the code under test:

* Goyal et al. eq. (9), Chainer's sign (``v = -u``):
  :math:`v_{t+1} = m v_t - g_t,\ w_{t+1} = w_t + \eta_{t+1} v_{t+1}`
* eq. (10), Chainer's ``MomentumSGD``:
  :math:`v_{t+1} = m v_t - \eta_{t+1} g_t,\ w_{t+1} = w_t + v_{t+1}`

in exact rational arithmetic (:class:`fractions.Fraction`), one element at a
time. Alongside each trajectory it carries the same recurrence on absolute
values, which bounds the rounding error of a floating-point evaluation: every
step adds at most a few roundings of relative size ``eps`` of quantities no
larger than those magnitudes.

The loss-scale model works in :math:`\log_2` space, where every factor of the
schedule (1/2, 2, :math:`2^{1/\text{interval}}`) is an exact rational step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: Unit roundoff (half an ulp at 1) per dtype.
UNIT_ROUNDOFF = {"float16": 2.0**-11, "float32": 2.0**-24, "float64": 2.0**-53}


@dataclass
class Trajectory:
    """Exact values after each step (index 0 is the start), and error bounds."""

    params: list[list[Fraction]]
    states: list[list[Fraction]]
    #: Per step and element, a bound on |float result - exact| for unit roundoff 1.
    param_error: list[list[Fraction]]
    state_error: list[list[Fraction]]

    def param_array(self, step: int) -> np.ndarray:
        return np.array([float(x) for x in self.params[step]])

    def state_array(self, step: int) -> np.ndarray:
        return np.array([float(x) for x in self.states[step]])

    def param_tolerance(self, step: int, eps: float) -> np.ndarray:
        return np.array([float(e) * eps for e in self.param_error[step]])

    def state_tolerance(self, step: int, eps: float) -> np.ndarray:
        return np.array([float(e) * eps for e in self.state_error[step]])


def exact(values: Sequence[float] | np.ndarray) -> list[Fraction]:
    """The exact rational value of each float (floats are dyadic rationals)."""
    return [Fraction(float(x)) for x in np.asarray(values, dtype=np.float64).ravel()]


def momentum_trajectory(
    p0: Sequence[Fraction],
    grads: Sequence[Sequence[Fraction] | None],
    lrs: Sequence[Fraction],
    momenta: Sequence[Fraction],
    corrected: bool,
) -> Trajectory:
    """Run eq. (9) (``corrected``) or eq. (10) exactly.

    ``grads[k]`` is the gradient of step ``k`` (``None``: cleared, which
    Chainer turns into zeros), ``lrs[k]`` and ``momenta[k]`` the
    hyperparameters in force at step ``k``.

    The error bound follows the standard forward analysis: each of the three
    operations per element (``m*v``, ``- g`` or ``- lr*g``, ``+ lr*v`` or
    ``+ v``) rounds once, plus the rounding of ``m`` and ``lr`` to the array
    dtype (NumPy's weak Python scalars); so the bound adds ``k`` times the
    magnitude of each rounded quantity, with a factor 2 of slack.
    """
    n = len(p0)
    p = list(p0)
    v = [Fraction(0)] * n
    # magnitudes and error bounds (in units of eps)
    ep = [Fraction(0)] * n
    ev = [Fraction(0)] * n
    params, states, perr, serr = [list(p)], [list(v)], [list(ep)], [list(ev)]
    for g, lr, m in zip(grads, lrs, momenta, strict=True):
        g = [Fraction(0)] * n if g is None else list(g)
        for i in range(n):
            mv = m * v[i]
            if corrected:
                v_new = mv - g[i]
                step = lr * v_new
                # m*v (rounded m, rounded product), minus g, lr*v (rounded lr, product), plus p
                ev_new = m * ev[i] + 2 * abs(mv) + abs(v_new)
                ep[i] = ep[i] + lr * ev_new + 2 * abs(step) + abs(p[i] + step)
            else:
                lg = lr * g[i]
                v_new = mv - lg
                step = v_new
                ev_new = m * ev[i] + 2 * abs(mv) + 2 * abs(lg) + abs(v_new)
                ep[i] = ep[i] + ev_new + abs(p[i] + step)
            ev[i] = ev_new
            v[i] = v_new
            p[i] = p[i] + step
        params.append(list(p))
        states.append(list(v))
        perr.append([2 * e for e in ep])
        serr.append([2 * e for e in ev])
    return Trajectory(params, states, perr, serr)


def closed_form_constant(
    p0: Fraction, g: Fraction, lr: Fraction, m: Fraction, t: int
) -> tuple[Fraction, Fraction]:
    r"""Eq. (9) after ``t`` steps of a constant gradient and learning rate.

    .. math::

        v_t = -g \sum_{k<t} m^k, \qquad
        w_t = w_0 - \eta g \sum_{j=1}^{t} \sum_{k<j} m^k
    """
    geometric = [sum((m**k for k in range(j)), Fraction(0)) for j in range(t + 1)]
    return p0 - lr * g * sum(geometric[1:], Fraction(0)), -g * geometric[t]


LOSS_SCALE_MAX = 65504.0


def loss_scale_log2_sequence(
    nonfinite: Sequence[bool], interval: int, start_log2: Fraction = Fraction(0)
) -> list[float]:
    r"""``log2`` of the dynamic loss scale after each step of a run.

    The rule (Chainer 7.8.1): after each update the scale is multiplied by
    1/2 if a gradient of this step was not finite, else by 2 if none ever
    was, else by :math:`2^{1/\text{interval}}`, and clamped to
    ``[1, 65504]``. In ``log2`` space the factors are -1, +1 and
    ``Fraction(1, interval)`` (exact); the clamps are ``0`` and
    ``log2(65504)`` (irrational; kept as a float).
    """
    top = math.log2(LOSS_SCALE_MAX)
    level: Fraction | float = start_log2
    ever = False
    out = []
    for bad in nonfinite:
        ever = ever or bad
        delta = Fraction(-1) if bad else (Fraction(1, interval) if ever else Fraction(1))
        level = level + delta
        if level > top:
            level = top
        if level < 0:
            level = Fraction(0)
        out.append(float(level))
    return out
