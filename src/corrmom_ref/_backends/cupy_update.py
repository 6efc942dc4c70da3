r"""CuPy: the corrected-momentum step as one elementwise kernel.

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

One kernel reads ``p, g, v`` and writes ``p, v`` once, in place.
"""

from __future__ import annotations

from typing import Any

import cupy

__all__ = ["corrected_step"]

_KERNEL = cupy.ElementwiseKernel(
    "T g, T lr, T m",
    "T p, T v",
    "v = m * v - g; p += lr * v;",
    "corrmom_ref_corrected_momentum",
)


def corrected_step(p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any] | None:
    """Update ``p`` and ``v`` in place; ``None`` if the inputs differ in dtype, shape or device."""
    if not (p.dtype == g.dtype == v.dtype and p.shape == g.shape == v.shape):
        return None
    if not (p.flags.c_contiguous and v.flags.c_contiguous and p.device == g.device == v.device):
        return None
    _KERNEL(g, p.dtype.type(lr), p.dtype.type(m), p, v)
    return p, v
