r"""The streaming-bandwidth probe that sets each workload's memory floor.

The probe is NumPy's in-place add of two large float32 arrays, ``a += b``:
it reads 8 and writes 4 bytes per element. An optimizer step reads the
parameter, its gradient and its state and writes two of them back,
``STEP_BYTES = 20`` bytes per float32 element, so its floor is

.. math:: t_{floor} = 20\,n / B, \qquad B = 12\,N / t_{probe}.
"""

from __future__ import annotations

from benchmarks.impls.base import time_steps

PROBE_BYTES_PER_ELEMENT = 12
STEP_BYTES = 20


class StreamProbe:
    """``a += b`` on two arrays of ``n`` float32 elements (well beyond the last-level cache)."""

    name = "stream a+=b"

    def __init__(self, n: int) -> None:
        import numpy as np

        self.n = n
        self._a = np.ones(n, dtype=np.float32)
        self._b = np.full(n, 1e-7, dtype=np.float32)

    def _one(self) -> None:
        self._a += self._b

    def run(self, steps: int) -> float:
        return time_steps(self._one, steps)

    def bandwidth(self, seconds_per_pass: float) -> float:
        """Bytes per second implied by one pass of ``seconds_per_pass``."""
        return PROBE_BYTES_PER_ELEMENT * self.n / seconds_per_pass


def floor_seconds(n_elements: int, bandwidth: float) -> float:
    """The memory floor of one step over ``n_elements`` float32 elements."""
    return STEP_BYTES * n_elements / bandwidth
