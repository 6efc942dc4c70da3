r"""JAX: the generic corrected-momentum step compiled once with ``jax.jit``.

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

XLA fuses both lines into one pass. ``lr`` and ``m`` are traced (weakly
typed) arguments, so a changed learning rate does not recompile. The inputs
are not donated: a user may still hold the previous parameter array.
"""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["corrected_step"]


@jax.jit
def _corrected(p: Any, g: Any, v: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    v = m * v - g
    return p + lr * v, v


def corrected_step(p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any] | None:
    """The new ``(p, v)``; ``None`` if the inputs differ in dtype or shape."""
    if not (p.dtype == g.dtype == v.dtype and p.shape == g.shape == v.shape):
        return None
    return _corrected(p, g, v, lr, m)
