"""What every implementation under test provides, and the shared inputs.

All implementations run the same maths, corrected momentum with Chainer's
sign (or PyTorch/optax's equivalent form), ``lr = 0.01`` and ``m = 0.9``, on
the same float32 parameters and gradients (standard normal, fixed seed).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol

LR = 0.01
MOMENTUM = 0.9
SEED = 0

Shape = tuple[int, ...]


class Impl(Protocol):
    """An optimizer step under test."""

    #: Row label, e.g. ``"ref numpy generic"``.
    name: str

    def setup(self, shapes: Sequence[Shape]) -> None:
        """Create parameters, gradients and optimizer state, and run one untimed warm-up step."""

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` consecutive steps, finished (synchronised) on return."""

    def peak_extra_bytes(self) -> int | None:
        """Peak memory a steady-state step allocates beyond what it holds, or ``None`` if unmeasurable."""

    def close(self) -> None:
        """Release the arrays (and any worker)."""


def host_data(shapes: Sequence[Shape], seed: int = SEED) -> tuple[list, list]:
    """Fresh NumPy float32 parameters and gradients for ``shapes`` (same values in every process)."""
    params, grads = _cached_host_data(tuple(tuple(s) for s in shapes), seed)
    return [p.copy() for p in params], [g.copy() for g in grads]


@lru_cache(maxsize=1)
def _cached_host_data(shapes: tuple[Shape, ...], seed: int) -> tuple[list, list]:
    import numpy as np

    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    return params, grads


def time_steps(step: Callable[[], object], steps: int, sync: Callable[[], object] = lambda: None) -> float:
    """Wall-clock seconds of ``steps`` calls of ``step`` followed by ``sync``."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - start


def traced_peak(step: Callable[[], object]) -> int:
    """Peak bytes allocated during one call of ``step`` beyond those held before (tracemalloc).

    NumPy reports its data buffers to tracemalloc, so this counts temporaries.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - before)
