r"""JAX: the reference's pure corrected step, compiled once with ``jax.jit``.

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

The compiled function is :func:`corrmom_ref._step.reference.corrected_pure` itself
(over a list of triples: one call for all), so the formula is not written
again here. XLA fuses the two lines into one pass and may contract the
products into fused multiply-adds, so the result is within one rounding per
product of the reference step (``ROUNDINGS = 1``). ``lr`` and ``m`` are traced
(weakly typed) arguments, so a changed learning rate does not recompile. The
old ``p`` and ``v`` are donated (their buffers reused for the results) only
under ``use_fast_paths(True, donate=True)``: a user may still hold the
previous parameter array. Without donation every step allocates two new arrays
(what that costs is in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from typing import Any

import jax

from corrmom_ref._step import switch
from corrmom_ref._step.admission import alike_and_separate
from corrmom_ref._step.reference import corrected_pure

__all__ = ["ROUNDINGS", "accepts", "run"]

#: Roundings per product by which the compiled step may differ from the reference step.
ROUNDINGS = 1


def _corrected_lists(ps: Any, gs: Any, vs: Any, lr: Any, m: Any) -> tuple[Any, Any]:
    stepped = [corrected_pure(p, g, v, lr, m) for p, g, v in zip(ps, gs, vs, strict=True)]
    return [p for p, _ in stepped], [v for _, v in stepped]


_KEEP = jax.jit(_corrected_lists)
_DONATE = jax.jit(_corrected_lists, donate_argnums=(0, 2))


def accepts(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> bool:
    """Whether one compiled call steps the lists: the shared check, nothing more.

    (Compiled once per list of shapes and dtypes; a model's parameters do
    not change between steps.)
    """
    return alike_and_separate(ps, gs, vs)


def run(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> tuple[list[Any], list[Any]]:
    """The new ``(ps, vs)`` from one compiled call (donating the old buffers if the switch says so)."""
    compiled = _DONATE if switch.current().donate else _KEEP
    return compiled(ps, gs, vs, lr, m)
