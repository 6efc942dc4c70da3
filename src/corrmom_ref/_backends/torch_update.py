r"""PyTorch: the corrected-momentum step as one pass of PyTorch's fused SGD kernel.

``torch._fused_sgd_`` keeps ``b <- m b + g; p <- p - lr b``. With
``maximize=True`` it negates the gradient, and with the learning rate negated
it becomes exactly our step on Chainer's sign of the state:

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

reading ``p, g, v`` and writing ``p, v`` once (20 bytes per float32 element).
The kernel skips the momentum buffer when ``m == 0`` and walks memory
linearly, so those cases and non-contiguous inputs are left to the generic step.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["available", "corrected_step"]

_DTYPES = (torch.float32, torch.float64)


def available() -> bool:
    """Whether this PyTorch has the fused SGD kernel."""
    return hasattr(torch, "_fused_sgd_")


def corrected_step(p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any] | None:
    """Update ``p`` and ``v`` in place; ``None`` if the inputs are not for the fused kernel."""
    if m == 0 or not (p.dtype == g.dtype == v.dtype and p.dtype in _DTYPES):
        return None
    if not (p.device == g.device == v.device and p.shape == g.shape == v.shape):
        return None
    if not (p.is_contiguous() and g.is_contiguous() and v.is_contiguous()):
        return None  # the CPU kernel walks memory linearly
    if p.requires_grad or g.requires_grad or v.requires_grad:
        with torch.no_grad():  # ~2 us per call: entered only when autograd could record
            _fused_corrected(p, g, v, lr, m)
    else:
        _fused_corrected(p, g, v, lr, m)
    return p, v


def _fused_corrected(p: Any, g: Any, v: Any, lr: float, m: float) -> None:
    torch._fused_sgd_(
        [p],
        [g],
        [v],
        weight_decay=0.0,
        momentum=m,
        lr=-lr,
        dampening=0.0,
        nesterov=False,
        maximize=True,
        is_first_step=False,
    )
