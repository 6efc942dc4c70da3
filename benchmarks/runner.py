"""Alternated repetitions of every implementation on one workload.

Each round runs every implementation once (``steps`` consecutive steps, one
sample) in an order rotated by one each round, and the bandwidth probe once,
so that slow drifts of a shared machine hit every implementation alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.bandwidth import StreamProbe
from benchmarks.impls.base import Impl
from benchmarks.stats import Summary, summarize
from benchmarks.workloads import Workload


@dataclass
class Measured:
    """Per-step seconds of one implementation on one workload."""

    name: str
    summary: Summary
    steps_per_sample: int
    peak_extra_bytes: int | None


@dataclass
class WorkloadResult:
    workload: Workload
    probe: Summary
    results: list[Measured] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _calibrate(run: Callable[[int], float], target_s: float) -> int:
    """Steps per sample so that one sample takes about ``target_s`` (at least one step)."""
    once = run(1)
    return max(1, min(1000, round(target_s / max(once, 1e-7))))


def measure(
    workload: Workload,
    impls: Sequence[Impl],
    probe: StreamProbe,
    rounds: int,
    target_s: float,
    log: Callable[[str], Any] = lambda s: print(s, file=sys.stderr, flush=True),
) -> WorkloadResult:
    """Set up every implementation, then time them in ``rounds`` alternated rounds."""
    ready: list[Impl] = []
    skipped: dict[str, str] = {}
    for impl in impls:
        try:
            impl.setup(workload.shapes)
        except Exception as error:  # an implementation that cannot run here is reported, not fatal
            skipped[impl.name] = f"{type(error).__name__}: {error}"
            log(f"  skip {impl.name}: {skipped[impl.name]}")
            continue
        ready.append(impl)
    contenders: list[Any] = [probe, *ready]
    steps = [_calibrate(c.run, target_s) for c in contenders]
    samples: list[list[float]] = [[] for _ in contenders]
    for r in range(rounds):
        order = [(i + r) % len(contenders) for i in range(len(contenders))]
        for i in order:
            samples[i].append(contenders[i].run(steps[i]) / steps[i])
        log(f"  {workload.name}: round {r + 1}/{rounds}")
    result = WorkloadResult(workload, summarize(samples[0]), skipped=skipped)
    for impl, n, s in zip(ready, steps[1:], samples[1:], strict=True):
        result.results.append(Measured(impl.name, summarize(s), n, impl.peak_extra_bytes()))
        impl.close()
    return result
