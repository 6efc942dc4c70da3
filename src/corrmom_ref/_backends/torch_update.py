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

from collections.abc import Callable
from operator import attrgetter
from typing import Any

import torch

__all__ = ["available", "corrected_step", "corrected_steps"]

_DTYPES = (torch.float32, torch.float64)


def available() -> bool:
    """Whether this PyTorch has the fused SGD kernel."""
    return hasattr(torch, "_fused_sgd_")


def corrected_step(p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any] | None:
    """Update ``p`` and ``v`` in place; ``None`` if the inputs are not for the fused kernel."""
    stepped = corrected_steps([p], [g], [v], lr, m)
    return None if stepped is None else (p, v)


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
    dtype, on_device = ps[0].dtype, _on_device_of(ps[0])
    if dtype not in _DTYPES:
        return None
    records_autograd = False
    for p, g, v in zip(ps, gs, vs, strict=True):
        if not (p.dtype is dtype and g.dtype is dtype and v.dtype is dtype):  # dtypes are singletons
            return None
        if not (on_device(p) and on_device(g) and on_device(v)):
            return None
        if not (
            p.shape == g.shape == v.shape and p.is_contiguous() and g.is_contiguous() and v.is_contiguous()
        ):
            return None
        records_autograd = records_autograd or p.requires_grad or g.requires_grad or v.requires_grad
    if len({id(t) for t in (*ps, *vs)}) != 2 * len(ps):
        return None
    if records_autograd:
        with torch.no_grad():  # ~2 us: entered only when autograd could record
            _fused_corrected(ps, gs, vs, lr, m)
    else:
        _fused_corrected(ps, gs, vs, lr, m)
    return ps, vs


def _on_device_of(t: Any) -> Callable[[Any], bool]:
    """A test of whether a tensor is on ``t``'s device.

    A tensor's ``device`` is a new object on every read, and comparing two
    costs as much again; the CPU (one device) and CUDA (a type and an index)
    have cheaper tests.
    """
    device = t.device
    if device.type == "cpu":
        return attrgetter("is_cpu")
    if device.type == "cuda":
        index = t.get_device()
        return lambda other: other.is_cuda and other.get_device() == index
    return lambda other: other.device == device


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
