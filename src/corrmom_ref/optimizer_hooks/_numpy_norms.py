r"""NumPy: the norms of :class:`~corrmom_ref.optimizer_hooks.GradientClipping` and
:class:`~corrmom_ref.optimizer_hooks.GradientLARS` with Chainer's roundings.

Chainer 7.8.1 computes these norms with NumPy operations the Array API does
not have, and the results differ from a float64 sum of squares in the last
bits, which moves the clipped or rescaled gradients:

* the global norm of ``GradientClipping`` is :math:`\sqrt{\sum_p d_p}` with
  :math:`d_p = \operatorname{dot}(g_p, g_p)` taken over the flattened gradient
  *in the gradient's dtype* (BLAS for float32 and float64), summed with
  Python's ``sum`` in the order of ``target.params()``, the square root taken
  of the resulting NumPy scalar;
* the norms of ``GradientLARS`` are ``numpy.linalg.norm`` (the same dot in
  the array's dtype, then a square root), and the ratio mixes those NumPy
  scalars with the Python-float ``eps``, ``weight_decay`` and ``threshold``.

The functions here do exactly that, operation by operation, so that the
hooks agree with Chainer bit for bit on NumPy (on NumPy 1.x including the
promotions of NumPy scalars, as in Chainer). They update the gradients in
place where they are writeable, as Chainer does, and return the arrays to
store otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["clip_by_global_norm", "lars_scale"]


def clip_by_global_norm(grads: list[np.ndarray], threshold: float) -> list[np.ndarray] | None:
    r"""``g * (threshold / norm)`` for every gradient when that factor is below 1, else ``None``.

    ``norm`` is :math:`\sqrt{\sum_p \operatorname{dot}(g_p, g_p)}` as the module
    docstring describes. A ``None`` result means nothing is clipped (also for
    an empty list or a zero norm, where the factor is infinite).
    """
    if not grads:
        return None
    dots = []
    for g in grads:
        flat = g.ravel()
        dots.append(flat.dot(flat))
    norm = np.sqrt(sum(dots))
    with np.errstate(divide="ignore"):
        rate = threshold / norm
    if rate >= 1:
        return None
    return [_in_place_or_new(g, lambda x: _imul(x, rate)) for g in grads]


def lars_scale(p: np.ndarray, g: np.ndarray, threshold: float, weight_decay: float, eps: float) -> np.ndarray:
    r"""``(g + weight_decay * p) * rate`` with :math:`r = \lVert p \rVert / (\epsilon + \lVert g \rVert + \lambda \lVert p \rVert)`
    where :math:`\lVert p \rVert > \text{threshold}`, else 1 (the norms are ``numpy.linalg.norm``)."""
    p_norm = np.linalg.norm(p)
    g_norm = np.linalg.norm(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        local_rate = p_norm / (eps + g_norm + weight_decay * p_norm)
    rate = np.where(p_norm > threshold, local_rate, 1.0)

    def scale(x: np.ndarray) -> np.ndarray:
        x += weight_decay * p
        x *= rate
        return x

    return _in_place_or_new(g, scale)


def _imul(x: np.ndarray, factor: Any) -> np.ndarray:
    x *= factor
    return x


def _in_place_or_new(g: np.ndarray, update: Any) -> np.ndarray:
    """``update(g)`` in place when ``g`` is writeable, else on a copy (the caller stores the result)."""
    if g.flags.writeable:
        return update(g)
    return update(g.copy())
