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

__all__ = ["available", "corrected_steps"]

_DTYPES = (torch.float32, torch.float64)


def available() -> bool:
    """Whether this PyTorch has the fused SGD kernel."""
    return hasattr(torch, "_fused_sgd_")


def corrected_steps(
    ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float
) -> tuple[list[Any], list[Any]] | None:
    """Update every ``p`` and ``v`` in place with one kernel call; ``None`` if any input is not for it.

    The kernel takes one dtype and device per call, skips the momentum
    buffer when ``m == 0`` and walks memory linearly; a tensor given twice
    (tied parameters) would be read before its first update is written, so
    such lists are declined too and stepped one by one.
    """
    if m == 0 or not ps:
        return None
    first = ps[0]
    dtype, cpu = first.dtype, first.is_cpu
    if dtype not in _DTYPES:
        return None
    for p, g, v in zip(ps, gs, vs, strict=True):
        if not (
            p.dtype is dtype  # dtypes are singletons
            and g.dtype is dtype
            and v.dtype is dtype
            and p.is_cpu is cpu  # a device is a new object on each read; is_cpu is not
            and g.is_cpu is cpu
            and v.is_cpu is cpu
            and p.shape == g.shape == v.shape
            and p.is_contiguous()
            and g.is_contiguous()
            and v.is_contiguous()
        ):
            return None
    if not cpu and any(t.device != first.device for t in (*ps, *gs, *vs)):
        return None
    if len({id(t) for t in (*ps, *vs)}) != 2 * len(ps):
        return None
    with torch.no_grad():  # one context per call is cheaper than asking each tensor
        _fused_corrected(ps, gs, vs, lr, m)
    return ps, vs


def _fused_corrected(ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float) -> None:
    torch._fused_sgd_(
        ps,
        gs,
        vs,
        weight_decay=0.0,
        momentum=m,
        lr=-lr,
        dampening=0.0,
        nesterov=False,
        maximize=True,
        is_first_step=False,
    )
