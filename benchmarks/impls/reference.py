"""corrmom_ref's CorrectedMomentumSGD on NumPy, PyTorch or JAX, as a user runs it.

Modes: ``generic`` (the Array API step only, fast paths switched off),
``fast`` (the default dispatch: native fast path where the backend has one),
``fast+donate`` (JAX: the fast path may donate the old buffers),
``flat`` (the opt-in flat-buffer mode, :mod:`corrmom_ref.flat`, with the default dispatch).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from benchmarks.impls.base import LR, MOMENTUM, Shape, host_data, time_steps, traced_peak

MODES = ("generic", "fast", "fast+donate", "flat")


def _convert(backend: str) -> tuple[Any, Any]:
    """``(to_native, sync)`` for a backend name."""
    if backend == "numpy":
        return (lambda a: a), None
    if backend == "torch":
        import torch

        return torch.from_numpy, None
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return jnp.asarray, jax.block_until_ready
    raise ValueError(backend)


class Reference:
    """``opt.update()`` over a :class:`corrmom_ref.Link` holding one Parameter per shape."""

    def __init__(self, backend: str, mode: str = "generic") -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.backend = backend
        self.mode = mode
        self.name = f"ref {backend} {mode}"
        self._opt: Any = None

    def setup(self, shapes: Sequence[Shape]) -> None:
        import corrmom_ref as cr
        from corrmom_ref._backends.fast import use_fast_paths

        to_native, self._sync = _convert(self.backend)
        params, grads = host_data(shapes)
        link = cr.Link(**{f"p{i:05d}": cr.Parameter(to_native(p)) for i, p in enumerate(params)})
        for param, g in zip(link.params(), grads, strict=True):
            param.grad = to_native(g)
        if self.mode == "flat":
            from corrmom_ref import flat

            link = flat.flatten(link)
        self._params = list(link.params())
        self._opt = cr.CorrectedMomentumSGD(lr=LR, momentum=MOMENTUM).setup(link)
        self._context = {
            "generic": lambda: use_fast_paths(False),
            "fast+donate": lambda: use_fast_paths(True, donate=True),
        }.get(self.mode, nullcontext)
        self.run(1)

    def _finish(self) -> None:
        if self._sync is not None:
            self._sync([p.array for p in self._params])

    def run(self, steps: int) -> float:
        with self._context():
            return time_steps(self._opt.update, steps, self._finish)

    def peak_extra_bytes(self) -> int | None:
        if self.backend != "numpy":
            return None
        with self._context():
            return traced_peak(self._opt.update)

    def close(self) -> None:
        self._opt = None
        self._params = []
