r"""CuPy: the corrected-momentum step as one elementwise kernel.

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

One kernel reads ``p, g, v`` and writes ``p, v`` once, in place. The GPU
compiler contracts the products into fused multiply-adds, so the result is
within one rounding per product of the reference step (``ROUNDINGS = 1``).
"""

from __future__ import annotations

from typing import Any

import cupy

from corrmom_ref._step.admission import alike_and_separate

__all__ = ["ROUNDINGS", "accepts", "run"]

#: Roundings per product by which the kernel may differ from the reference step.
ROUNDINGS = 1

_KERNEL = cupy.ElementwiseKernel(
    "T g, T lr, T m",
    "T p, T v",
    "v = m * v - g; p += lr * v;",
    "corrmom_ref_corrected_momentum",
)


def accepts(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> bool:
    """The shared check plus: C-contiguous ``p`` and ``v``, every array on one device."""
    if not alike_and_separate(ps, gs, vs):
        return False
    device = ps[0].device
    return all(
        p.flags.c_contiguous and v.flags.c_contiguous and p.device == g.device == v.device == device
        for p, g, v in zip(ps, gs, vs, strict=True)
    )


def run(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> tuple[list[Any], list[Any]]:
    """Update every ``p`` and ``v`` in place, one kernel launch per triple (inputs :func:`accepts` took)."""
    for p, g, v in zip(ps, gs, vs, strict=True):
        _KERNEL(g, p.dtype.type(lr), p.dtype.type(m), p, v)
    return ps, vs
