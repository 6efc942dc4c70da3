r"""The suite's own model of momentum SGD and of Chainer's machinery.

Written from Goyal et al. (2017) section 3 and Chainer 7.8.1's documented
behaviour, independently of any implementation under test. The arithmetic is
generic: NumPy ``float64`` arrays for large cases, object arrays of
:class:`fractions.Fraction` for exact ones.

Eq. (9): :math:`u_{t+1} = m u_t + g_t,\ w_{t+1} = w_t - \eta_{t+1} u_{t+1}`.
Eq. (10): :math:`v_{t+1} = m \frac{\eta_{t+1}}{\eta_t} v_t + \eta_{t+1} g_t,\
w_{t+1} = w_t - v_{t+1}`, the factor present only with momentum correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

LOSS_SCALE_MAX = 65504.0


def exact(a: np.ndarray | float) -> np.ndarray:
    """``a`` as an object array of exact Fractions."""
    arr = np.asarray(a, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    for index in np.ndindex(arr.shape):
        out[index] = Fraction(float(arr[index]))
    return out


def eq9(
    w0: np.ndarray, grads: Sequence[np.ndarray], lrs: Sequence[float], momenta: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Eq. (9) from zero state: ``[(w_t, u_t)]`` after each step."""
    w, u = w0, w0 * 0
    out = []
    for g, lr, m in zip(grads, lrs, momenta, strict=True):
        u = m * u + g
        w = w - lr * u
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
        v = m * factor * v + lr * g
        w = w - v
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
                u = m * (self.w[name] * 0 if previous is None else previous) + g
                self.u[name] = u
                self.w[name] = self.w[name] - lr * u
                self.rule_t[name] += 1
        self.loss.after_step(skipped)
        return skipped


def finite_everywhere(arrays: Mapping[str, np.ndarray | None]) -> bool:
    """Whether every array is free of NaN and infinities."""
    return all(a is None or bool(np.all(np.isfinite(a))) for a in arrays.values())


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
