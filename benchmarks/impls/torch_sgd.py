"""PyTorch's ``torch.optim.SGD(momentum=0.9)`` in its three implementations.

PyTorch keeps ``b <- m b + g; p <- p - lr b`` (the first step sets ``b = g``),
which is corrected momentum with ``b = -v``: the same memory traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.impls.base import LR, MOMENTUM, Shape, host_data, time_steps

#: Label -> keyword arguments of ``torch.optim.SGD`` selecting the implementation.
VARIANTS: dict[str, dict[str, bool]] = {
    "for-loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


class TorchSGD:
    """``torch.optim.SGD`` with one ``nn.Parameter`` per shape and fixed gradients."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.name = f"torch SGD {variant}"
        self._opt: Any = None

    def setup(self, shapes: Sequence[Shape]) -> None:
        import torch

        params, grads = host_data(shapes)
        self._params = [torch.nn.Parameter(torch.from_numpy(p)) for p in params]
        for p, g in zip(self._params, grads, strict=True):
            p.grad = torch.from_numpy(g)
        self._opt = torch.optim.SGD(self._params, lr=LR, momentum=MOMENTUM, **VARIANTS[self.variant])
        self.run(1)

    def run(self, steps: int) -> float:
        return time_steps(self._opt.step, steps)

    def peak_extra_bytes(self) -> int | None:
        return None  # the CPU allocator keeps no statistics

    def close(self) -> None:
        self._opt = None
        self._params = []
