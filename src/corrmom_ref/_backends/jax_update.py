r"""JAX: the generic corrected-momentum step compiled once with ``jax.jit``.

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

XLA fuses both lines into one pass. ``lr`` and ``m`` are traced (weakly
typed) arguments, so a changed learning rate does not recompile. The old
``p`` and ``v`` are donated (their buffers reused for the results) only
under ``use_fast_paths(True, donate=True)``: a user may still hold the
previous parameter array. Without donation every step allocates two new
arrays, which on the CPU costs several times the step itself.
"""

from __future__ import annotations

from typing import Any

import jax

from corrmom_ref._backends.fast import donation_enabled

__all__ = ["corrected_increment", "corrected_step", "corrected_steps"]


def corrected_increment(g: Any, v: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    r"""The step's arithmetic short of the parameter: the increment :math:`\eta v` and the new :math:`v`.

    .. math:: v \leftarrow m v - g, \qquad \Delta p = \eta v

    Traced (pure); the compiled steps below add the increment to ``p``, and
    :mod:`corrmom_ref.optax` returns it as the optax update, so both round
    the same way.
    """
    v = m * v - g
    return lr * v, v


def _corrected(p: Any, g: Any, v: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    increment, v = corrected_increment(g, v, lr, m)
    return p + increment, v


_KEEP = jax.jit(_corrected)
_DONATE = jax.jit(_corrected, donate_argnums=(0, 2))


def _corrected_lists(ps: Any, gs: Any, vs: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    stepped = [_corrected(p, g, v, lr, m) for p, g, v in zip(ps, gs, vs, strict=True)]
    return [p for p, _ in stepped], [v for _, v in stepped]


_KEEP_LISTS = jax.jit(_corrected_lists)
_DONATE_LISTS = jax.jit(_corrected_lists, donate_argnums=(0, 2))


def _alike(p: Any, g: Any, v: Any) -> bool:
    """Whether ``p``, ``g`` and ``v`` share dtype and shape.

    An array's ``aval`` (shape, dtype, weak type) is read without building
    anything (a tenth of the cost of reading ``shape`` and ``dtype``), so equal
    avals answer at once; unequal ones (a weakly typed array, say) are
    compared by dtype and shape.
    """
    return p.aval == g.aval == v.aval or (p.dtype == g.dtype == v.dtype and p.shape == g.shape == v.shape)


def corrected_step(p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any] | None:
    """The new ``(p, v)``; ``None`` if the inputs differ in dtype or shape."""
    if not _alike(p, g, v):
        return None
    if donation_enabled() and p is not v and p is not g and g is not v:
        return _DONATE(p, g, v, lr, m)
    return _KEEP(p, g, v, lr, m)


def corrected_steps(
    ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float
) -> tuple[list[Any], list[Any]] | None:
    """The new ``(ps, vs)`` from one compiled call over the lists; ``None`` if a triple differs in dtype or shape.

    Compiled once per list of shapes and dtypes (a model's parameters do not
    change between steps). Donation needs every donated array to be distinct.
    """
    for p, g, v in zip(ps, gs, vs, strict=True):
        if not _alike(p, g, v):
            return None
    if donation_enabled() and len({id(a) for a in (*ps, *gs, *vs)}) == 3 * len(ps):
        return _DONATE_LISTS(ps, gs, vs, lr, m)
    return _KEEP_LISTS(ps, gs, vs, lr, m)
