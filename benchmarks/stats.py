"""Summary of repeated timings: median and interquartile spread."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median and quartiles of per-step seconds over the alternated repetitions."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else float("nan")


def summarize(samples: list[float]) -> Summary:
    """Median and quartiles (``statistics.quantiles``, inclusive method) of ``samples``."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) == 1:
        return Summary(samples[0], samples[0], samples[0], 1)
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Summary(med, q1, q3, len(samples))
