r"""The suite's own model of momentum SGD and of Chainer's machinery.

Written from Goyal et al. (2017) section 3 and Chainer 7.8.1's documented
behaviour, independently of any implementation under test. The arithmetic is
generic: NumPy ``float64`` arrays for large cases, object arrays of
:class:`fractions.Fraction` for exact ones.

Eq. (9): :math:`u_{t+1} = m u_t + g_t,\ w_{t+1} = w_t - \eta_{t+1} u_{t+1}`.
Eq. (10): :math:`v_{t+1} = m \frac{\eta_{t+1}}{\eta_t} v_t + \eta_{t+1} g_t,\
w_{t+1} = w_t - v_{t+1}`, the factor present only with momentum correction.

The one oracle of the project: the unit tests (``tests/``) import it too.
Besides the float64 model of Chainer's machinery it holds the exact model
(:func:`momentum_trajectory`, with forward error bounds), the loss-scale
schedule in :math:`\log_2` space (:func:`loss_scale_log2_sequence`) and the
rounding bound between a fast path and its generic twin
(:func:`beyond_rounding_bound`). It imports nothing from the implementations
under test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from corrmom_conformance.tolerances import first_bit_difference

#: The largest dynamic loss scale (float16's largest finite value).
LOSS_SCALE_MAX = 65504.0

#: Unit roundoff (half an ulp at 1) per dtype.
UNIT_ROUNDOFF = {"float16": 2.0**-11, "float32": 2.0**-24, "float64": 2.0**-53}


def exact(a: np.ndarray | Sequence[float] | float) -> np.ndarray:
    """``a`` as an object array of exact Fractions, same shape (floats are dyadic rationals)."""
    arr = np.asarray(a, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    for index in np.ndindex(arr.shape):
        out[index] = Fraction(float(arr[index]))
    return out


def eq9_step(w: Any, u: Any, g: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    r"""One step of eq. (9): :math:`u' = m u + g,\ w' = w - \eta u'`; returns ``(w', u')``.

    The suite's one statement of the corrected update, in this order of
    operations, for any arithmetic (float64 or dtype arrays, Fractions).
    """
    u = m * u + g
    return w - lr * u, u


def eq10_step(w: Any, v: Any, g: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    r"""One step of eq. (10): :math:`v' = m v + \eta g,\ w' = w - v'`; returns ``(w', v')``.

    ``m`` is the factor on the old state: the momentum, times
    :math:`\eta_{t+1} / \eta_t` for eq. (10) with momentum correction.
    """
    v = m * v + lr * g
    return w - v, v


def eq9(
    w0: np.ndarray, grads: Sequence[np.ndarray], lrs: Sequence[float], momenta: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Eq. (9) from zero state: ``[(w_t, u_t)]`` after each step."""
    w, u = w0, w0 * 0
    out = []
    for g, lr, m in zip(grads, lrs, momenta, strict=True):
        w, u = eq9_step(w, u, g, lr, m)
        out.append((w, u))
    return out


def eq10(
    w0: np.ndarray,
    grads: Sequence[np.ndarray],
    lrs: Sequence[float],
    momenta: Sequence[float],
    corrected: bool,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Eq. (10) from zero state, with or without the correction factor: ``[(w_t, v_t)]``."""
    w, v = w0, w0 * 0
    out = []
    previous_lr = None
    for g, lr, m in zip(grads, lrs, momenta, strict=True):
        factor = lr / previous_lr if corrected and previous_lr else 1
        w, v = eq10_step(w, v, g, lr, m * factor)
        out.append((w, v))
        previous_lr = lr
    return out


@dataclass
class LossScaleModel:
    """Chainer's loss-scale policy (semantics file: "Loss scaling")."""

    scale: float | None = None
    dynamic: bool = False
    interval: int = 1000
    nonfinite_ever: bool = False

    def configure(self, interval: int = 1000, scale: float | None = None) -> None:
        if scale is None:
            self.dynamic, self.interval, self.scale, self.nonfinite_ever = True, interval, 1.0, False
        else:
            self.scale = scale

    def after_step(self, nonfinite: bool) -> None:
        if not self.dynamic:
            return
        assert self.scale is not None
        if nonfinite:
            self.nonfinite_ever = True
            factor = 0.5
        elif self.nonfinite_ever:
            factor = 2.0 ** (1.0 / self.interval)
        else:
            factor = 2.0
        self.scale = max(1.0, min(LOSS_SCALE_MAX, self.scale * factor))


@dataclass
class ChainerModel:
    """Chainer's ``CorrectedMomentumSGD`` semantics over named parameters, without hooks.

    ``u`` holds eq. (9)'s buffer (Chainer stores ``-u``); gradients cleared
    (``None``) count as zeros, so such a parameter still moves; a step with a
    non-finite gradient under dynamic loss scaling changes no parameter or
    state, advances ``t`` but no rule counter.
    """

    w: dict[str, np.ndarray]
    lr: float
    momentum: float
    u: dict[str, np.ndarray | None] = field(default_factory=dict)
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    t: int = 0
    rule_t: dict[str, int] = field(default_factory=dict)
    epoch: int = 0
    loss: LossScaleModel = field(default_factory=LossScaleModel)

    def __post_init__(self) -> None:
        for name in self.w:
            self.u.setdefault(name, None)
            self.rule_t.setdefault(name, 0)

    def hyper(self, name: str, key: str) -> float:
        return self.overrides.get(name, {}).get(key, getattr(self, key))

    def step(self, grads: Mapping[str, np.ndarray | None]) -> bool:
        """Apply one update; return whether it was skipped."""
        full = {k: (grads.get(k) if grads.get(k) is not None else self.w[k] * 0) for k in self.w}
        skipped = self.loss.dynamic and not all(
            np.all(np.isfinite(np.asarray(g, dtype=float))) for g in full.values()
        )
        self.t += 1
        if not skipped:
            for name, g in full.items():
                lr, m = self.hyper(name, "lr"), self.hyper(name, "momentum")
                previous = self.u[name]
                u = self.w[name] * 0 if previous is None else previous
                self.w[name], self.u[name] = eq9_step(self.w[name], u, g, lr, m)
                self.rule_t[name] += 1
        self.loss.after_step(skipped)
        return skipped


def finite_everywhere(arrays: Mapping[str, np.ndarray | None]) -> bool:
    """Whether every array is free of NaN and infinities."""
    return all(a is None or bool(np.all(np.isfinite(a))) for a in arrays.values())


# -- the exact model, with error bounds -----------------------------------------------


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


def _flat(values: Sequence[Fraction] | np.ndarray) -> list[Fraction]:
    """The elements of a sequence or (object) array of Fractions, in C order."""
    return list(np.asarray(values, dtype=object).ravel())


def momentum_trajectory(
    p0: Sequence[Fraction],
    grads: Sequence[Sequence[Fraction] | None],
    lrs: Sequence[Fraction],
    momenta: Sequence[Fraction],
    corrected: bool,
) -> Trajectory:
    """Run eq. (9) (``corrected``) or eq. (10) exactly.

    ``p0`` and each gradient are Fractions of any shape (:func:`exact`),
    taken elementwise in C order; ``grads[k]`` is the gradient of step ``k`` (``None``: cleared, which
    Chainer turns into zeros), ``lrs[k]`` and ``momenta[k]`` the
    hyperparameters in force at step ``k``.

    The error bound follows the standard forward analysis: each of the three
    operations per element (``m*v``, ``- g`` or ``- lr*g``, ``+ lr*v`` or
    ``+ v``) rounds once, plus the rounding of ``m`` and ``lr`` to the array
    dtype (NumPy's weak Python scalars); so the bound adds ``k`` times the
    magnitude of each rounded quantity, with a factor 2 of slack.
    """
    p = _flat(p0)
    n = len(p)
    v = [Fraction(0)] * n
    # magnitudes and error bounds (in units of eps)
    ep = [Fraction(0)] * n
    ev = [Fraction(0)] * n
    params, states, perr, serr = [list(p)], [list(v)], [list(ep)], [list(ev)]
    for g, lr, m in zip(grads, lrs, momenta, strict=True):
        g = [Fraction(0)] * n if g is None else _flat(g)
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


# -- exact rounding ----------------------------------------------------------------


def chainer_cpu_step(
    p: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Chainer's CPU step, operation by operation, in ``p``'s dtype: ``v *= m; v -= g; p += lr * v``.

    Python floats meet a NumPy array as values of the array's dtype (NumPy 1's
    value-based casting and NumPy 2's weak scalars agree here), so ``m`` and
    ``lr`` are rounded to that dtype first; every operation rounds once.
    """
    kind = p.dtype.type
    v = np.multiply(v, kind(m), dtype=p.dtype)
    v = np.subtract(v, g, dtype=p.dtype)
    p = np.add(p, np.multiply(kind(lr), v, dtype=p.dtype), dtype=p.dtype)
    return p, v


# -- Chainer's built-in hooks, in float64 --------------------------------------------


def builtin_hook(
    kind: str,
    kwargs: Mapping[str, object],
    w: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    rule_t: Mapping[str, int],
    loss_scale: float | None,
) -> dict[str, np.ndarray]:
    r"""The gradients after Chainer's built-in optimizer hook ``kind`` (an optimizer pre hook).

    ``grads`` are what the hook sees: scaled by ``loss_scale`` if there is one.

    * WeightDecay(rate): :math:`g + \lambda s p` (the rate times the loss scale).
    * Lasso(rate): :math:`g + \lambda \operatorname{sign}(p)` (not times the scale).
    * GradientClipping(threshold): every :math:`g` times :math:`\tau / \lVert g \rVert_2`
      over all parameters, when that is below 1.
    * GradientHardClipping(lower_bound, upper_bound): elementwise clip.
    * GradientLARS(threshold, weight_decay, eps): :math:`r (g + \lambda p)` with
      :math:`r = \lVert p \rVert / (\epsilon + \lVert g \rVert + \lambda \lVert p \rVert)`
      when :math:`\lVert p \rVert >` threshold, else 1.
    * GradientNoise(eta, noise): :math:`g + \mathrm{noise}(shape, t_{rule})`, ``t`` before this update.
    """
    a = {k: float(v) for k, v in kwargs.items() if k != "noise"}  # type: ignore[arg-type]
    scale = 1.0 if loss_scale is None else loss_scale
    if kind == "WeightDecay":
        return {k: g + a["rate"] * scale * w[k] for k, g in grads.items()}
    if kind == "Lasso":
        return {k: g + a["rate"] * np.sign(w[k]) for k, g in grads.items()}
    if kind == "GradientClipping":
        norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
        rate = a["threshold"] / norm if norm > 0 else np.inf
        return dict(grads) if rate >= 1 else {k: g * rate for k, g in grads.items()}
    if kind == "GradientHardClipping":
        return {k: np.clip(g, a["lower_bound"], a["upper_bound"]) for k, g in grads.items()}
    if kind == "GradientLARS":
        out = {}
        for k, g in grads.items():
            p_norm, g_norm = float(np.linalg.norm(w[k])), float(np.linalg.norm(g))
            local = p_norm / (a["eps"] + g_norm + a["weight_decay"] * p_norm)
            rate = local if p_norm > a["threshold"] else 1.0
            out[k] = (g + a["weight_decay"] * w[k]) * rate
        return out
    if kind == "GradientNoise":
        noise = kwargs["noise"]
        return {k: g + noise(g.shape, rule_t[k]) for k, g in grads.items()}  # type: ignore[operator]
    raise ValueError(f"unknown built-in hook {kind!r}")


# -- a fast path against its generic twin ---------------------------------------------


def beyond_rounding_bound(
    name: str,
    fast: tuple[np.ndarray, np.ndarray],
    generic: tuple[np.ndarray, np.ndarray],
    v_before: np.ndarray | None,
    lr: float,
    m: float,
    roundings: float,
) -> str | None:
    r"""Where one fast step leaves the rounding bound of the generic step, or ``None``.

    ``fast`` and ``generic`` are ``(w, v)`` after one step from the same
    parameter, gradient and state ``v_before`` (``None``: zeros). With
    :math:`k` = ``roundings`` (the products a fused multiply-add does not
    round) and :math:`\epsilon` the machine epsilon of the generic ``w``'s
    dtype, elementwise

    .. math::

        |v_f - v_g| \le k\epsilon\,(|m\,v| + |v_g|) + 2k\tau, \qquad
        |w_f - w_g| \le \eta\,(k\epsilon\,(|m\,v| + |v_g|) + 2k\tau) + k\epsilon\,(|\eta\,v_g| + |w_g|) + 2k\tau

    (one rounding of each product and result in either path, at most half an
    ulp each; :math:`\tau` the dtype's smallest subnormal, since a rounding
    among subnormals errs by up to half of it whatever the magnitude;
    :math:`k = 0` demands bitwise equality, the signs of zeros included). The answer names the
    worst element: ``"state 'p'[3]: fast ... vs generic ..., beyond the bound
    of 1 rounding(s) (...)"``.
    """
    (w_f, v_f), (w_g, v_g) = fast, generic
    eps = roundings * float(np.finfo(w_g.dtype).eps)
    tiny = roundings * float(
        np.finfo(w_g.dtype).smallest_subnormal
    )  # a rounding among subnormals is absolute
    v0 = np.zeros_like(w_g, np.float64) if v_before is None else np.asarray(v_before).astype(np.float64)
    vg, wg = np.asarray(v_g).astype(np.float64), np.asarray(w_g).astype(np.float64)
    bound_v = eps * (np.abs(m * v0) + np.abs(vg)) + 2 * tiny
    bound_w = lr * bound_v + eps * (np.abs(lr * vg) + np.abs(wg)) + 2 * tiny
    for what, got, want, bound in (("state", v_f, vg, bound_v), ("parameter", w_f, wg, bound_w)):
        excess = np.abs(np.asarray(got).astype(np.float64) - want) - bound
        if np.any(excess > 0):
            worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
            return (
                f"{what} {name!r}{[int(i) for i in worst]}: fast {got[worst]!r} vs generic {want[worst]!r}, "
                f"beyond the bound of {roundings:g} rounding(s) ({bound[worst]:.3g})"
            )
    if roundings == 0:  # bitwise: the sign of a zero counts too
        for what, got, want in (("state", v_f, v_g), ("parameter", w_f, w_g)):
            index = first_bit_difference(np.asarray(got), np.asarray(want))
            if index is not None:
                return (
                    f"{what} {name!r} flat [{index}]: fast {np.asarray(got).reshape(-1)[index]!r} vs generic "
                    f"{np.asarray(want).reshape(-1)[index]!r}, not bitwise equal (0 roundings)"
                )
    return None
