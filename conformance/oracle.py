r"""The suite's own model of the maths, independent of every implementation.

Goyal et al. (2017), section 3, with learning rate :math:`\eta_{t+1}` used at
step :math:`t`:

.. math::

    \text{(9)}\quad u_{t+1} = m u_t + g_t,\quad w_{t+1} = w_t - \eta_{t+1} u_{t+1}

    \text{(10) corrected}\quad v_{t+1} = m \frac{\eta_{t+1}}{\eta_t} v_t + \eta_{t+1} g_t,
    \quad w_{t+1} = w_t - v_{t+1}

Both start at :math:`u_0 = v_0 = 0`; in exact arithmetic
:math:`v_t = \eta_t u_t` and the two give the same :math:`w_t`. A cleared
gradient counts as zero (Chainer reallocates it), a skipped step changes
nothing. With ``exact=True`` every value is a :class:`fractions.Fraction`
(the float inputs converted exactly), else float64.

The dynamic loss-scale policy is modelled in :func:`loss_scale_sequence`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

__all__ = ["OracleState", "Step", "eq9", "eq10_corrected", "loss_scale_sequence"]


@dataclass(frozen=True)
class Step:
    """One update: gradients (``None``: cleared), per-parameter ``lr`` and ``momentum``."""

    grads: Mapping[str, np.ndarray | None]
    lr: Mapping[str, float]
    momentum: Mapping[str, float]
    skip: bool = False


@dataclass
class OracleState:
    """Parameters ``w`` and momentum ``u`` of eq. (9) (``v = -u`` in Chainer's sign)."""

    w: dict[str, np.ndarray]
    u: dict[str, np.ndarray] = field(default_factory=dict)


def _lift(a: np.ndarray, exact: bool) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not exact:
        return a.copy()
    return np.array([Fraction(float(x)) for x in a.ravel()], dtype=object).reshape(a.shape)


def _arr(x: object, exact: bool) -> np.ndarray:
    """Keep 0-d results arrays (object arrays of Fractions decay to scalars)."""
    return np.asarray(x, dtype=object if exact else np.float64)


def _num(x: float, exact: bool) -> Fraction | float:
    return Fraction(float(x)) if exact else float(x)


def eq9(w0: Mapping[str, np.ndarray], steps: Sequence[Step], exact: bool = False) -> list[OracleState]:
    """States after each step of eq. (9); element ``k`` is after ``k + 1`` steps."""
    w = {n: _lift(a, exact) for n, a in w0.items()}
    u = {n: _lift(np.zeros_like(a, dtype=np.float64), exact) for n, a in w0.items()}
    out = []
    for step in steps:
        if not step.skip:
            for n in w:
                g = step.grads.get(n)
                g = _lift(np.zeros(np.shape(w[n])) if g is None else g, exact)
                u[n] = _arr(_num(step.momentum[n], exact) * u[n] + g, exact)
                w[n] = _arr(w[n] - _num(step.lr[n], exact) * u[n], exact)
        out.append(OracleState({n: a.copy() for n, a in w.items()}, {n: a.copy() for n, a in u.items()}))
    return out


def eq10_corrected(w0: Mapping[str, np.ndarray], steps: Sequence[Step],
                   exact: bool = False) -> list[OracleState]:
    """States of eq. (10) with the correction :math:`\\eta_{t+1}/\\eta_t` (needs ``lr > 0``).

    ``u`` is reported as :math:`v_t / \\eta_t` so it is comparable with :func:`eq9`.
    """
    w = {n: _lift(a, exact) for n, a in w0.items()}
    v = {n: _lift(np.zeros_like(a, dtype=np.float64), exact) for n, a in w0.items()}
    prev_lr: dict[str, Fraction | float | None] = {n: None for n in w0}
    out = []
    for step in steps:
        if not step.skip:
            for n in w:
                g = step.grads.get(n)
                g = _lift(np.zeros(np.shape(w[n])) if g is None else g, exact)
                lr = _num(step.lr[n], exact)
                ratio = 1 if prev_lr[n] is None else lr / prev_lr[n]
                v[n] = _arr(_num(step.momentum[n], exact) * ratio * v[n] + lr * g, exact)
                w[n] = _arr(w[n] - v[n], exact)
                prev_lr[n] = lr
        out.append(OracleState({n: a.copy() for n, a in w.items()},
                               {n: _arr(v[n] / (prev_lr[n] or 1), exact) for n in w}))
    return out


def loss_scale_sequence(overflows: Sequence[bool], interval: int, start: float = 1.0,
                        lo: float = 1.0, hi: float = 65504.0) -> list[float]:
    """The dynamic loss scale *used* at each step, then the scale after the last.

    Before the first overflow ever the scale doubles after every step; on an
    overflow it halves; after the first overflow it grows by
    :math:`2^{1/\\mathrm{interval}}` per clean step (doubling once per
    ``interval`` clean steps); always clamped to ``[lo, hi]``.
    """
    scales = [start]
    seen = False
    growth = math.pow(2.0, 1.0 / interval)
    for overflow in overflows:
        seen = seen or overflow
        factor = 0.5 if overflow else (growth if seen else 2.0)
        scales.append(min(hi, max(lo, scales[-1] * factor)))
    return scales
