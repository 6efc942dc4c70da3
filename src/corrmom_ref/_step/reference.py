r"""The two momentum steps as the reference states them: the arithmetic every fast path must match.

Corrected momentum (Goyal et al. eq. (9) with :math:`v = -u`, ``docs/maths.md``):

.. math:: v_{t+1} = m\,v_t - g_t, \qquad p_{t+1} = p_t + \eta_{t+1}\,v_{t+1}

Uncorrected momentum (eq. (10) with the sign of :math:`v` flipped, Chainer's ``MomentumSGD``):

.. math:: v_{t+1} = m\,v_t - \eta_{t+1}\,g_t, \qquad p_{t+1} = p_t + v_{t+1}

Each is written in Chainer's operation order on the CPU (a product, then the
difference; a product, then the sum), in place where ``p`` and ``v`` can be
written and anew otherwise, so results on NumPy are Chainer's bit for bit.
Callers store the returned ``(p, v)``: they are the inputs themselves when
the step ran in place. :class:`Form` names the two: the one way the library
chooses between eq. (9) and eq. (10). Faster siblings live beside this module
in :mod:`corrmom_ref._step` and are chosen by
:func:`corrmom_ref._step.policy.choose`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from array_api_compat import array_namespace, is_writeable_array

__all__ = ["Form", "corrected_increment", "corrected_step", "keep_dtype", "uncorrected_step"]

Array = Any


class Form(StrEnum):
    """Which of Goyal et al.'s two momentum updates a step computes."""

    #: Eq. (9): :math:`v \leftarrow m v - g,\ p \leftarrow p + \eta v` (``CorrectedMomentumSGD``).
    CORRECTED = "corrected"
    #: Eq. (10): :math:`v \leftarrow m v - \eta g,\ p \leftarrow p + v` (Chainer's ``MomentumSGD``).
    UNCORRECTED = "uncorrected"


def corrected_step(xp: Any, p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """One corrected step (eq. 9); returns the new ``(p, v)`` (``xp``: the rules' step signature; unused)."""
    if not (is_writeable_array(p) and is_writeable_array(v)):
        return corrected_pure(p, g, v, lr, m)
    return in_input_dtypes(corrected_in_place(p, g, v, lr, m), p, v)


def uncorrected_step(xp: Any, p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """One uncorrected step (eq. 10, Chainer's sign); returns the new ``(p, v)`` (``xp`` unused)."""
    if not (is_writeable_array(p) and is_writeable_array(v)):
        return uncorrected_pure(p, g, v, lr, m)
    return in_input_dtypes(uncorrected_in_place(p, g, v, lr, m), p, v)


def corrected_in_place(p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """Eq. (9) written into ``p`` and ``v`` (rebinding where the backend cannot write: Dask)."""
    v *= m
    v -= g
    p += lr * v
    return p, v


def uncorrected_in_place(p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """Eq. (10) written into ``p`` and ``v`` (rebinding where the backend cannot write: Dask)."""
    v *= m
    v -= lr * g
    p += v
    return p, v


def corrected_increment(g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    r"""Eq. (9) short of the parameter, pure: ``(increment, new v)``, the increment :math:`\eta\,v_{t+1}`."""
    v = keep_dtype(m * v - g, v)
    return lr * v, v


def corrected_pure(p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """Eq. (9) computed anew, in ``p``'s and ``v``'s dtypes."""
    increment, v = corrected_increment(g, v, lr, m)
    return keep_dtype(p + increment, p), v


def uncorrected_increment(g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    r"""Eq. (10) short of the parameter, pure: ``(increment, new v)``, the increment :math:`v_{t+1}` itself."""
    v = keep_dtype(m * v - lr * g, v)
    return v, v


def uncorrected_pure(p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """Eq. (10) computed anew, in ``p``'s and ``v``'s dtypes."""
    increment, v = uncorrected_increment(g, v, lr, m)
    return keep_dtype(p + increment, p), v


def in_input_dtypes(stepped: tuple[Array, Array], p: Array, v: Array) -> tuple[Array, Array]:
    """``stepped`` in ``p``'s and ``v``'s dtypes: an in-place step that rebinds (Dask) keeps them, as a write would."""
    new_p, new_v = stepped
    if new_p is p and new_v is v:
        return stepped
    return keep_dtype(new_p, p), keep_dtype(new_v, v)


def keep_dtype(result: Array, like: Array) -> Array:
    """``result`` as an array of ``like``'s dtype (a no-op when it already is one).

    NumPy 1.x applies value-based casting to 0-d arrays, so ``0.9 * v`` for a
    0-d float16 ``v`` is a float64 *scalar*; an in-place step cannot change
    the dtype, and a pure one must not either.
    """
    if type(result) is type(like) and result.dtype == like.dtype:
        return result
    return array_namespace(like).asarray(result, dtype=like.dtype)
