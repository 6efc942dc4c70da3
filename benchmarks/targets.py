"""Issue 22's speed targets, each a ratio of two rows of one ``nox -s bench`` run.

A pair's ratio is taken within each round (ours over theirs, each the median of
that round's steps) and the median over rounds reported with its range: both
rows of a round see the same state of a shared machine, which the ratio of the
two rows' medians over the whole run does not promise.
"""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

__all__ = ["TARGETS", "Target", "pair_ratios", "targets_table"]


class Target(NamedTuple):
    """``ours`` no slower than ``limit`` times ``theirs`` on every workload."""

    ours: str
    theirs: str
    limit: float


TARGETS = [
    Target("corrmom_ref.torch", "torch SGD fused", 1.05),
    Target("corrmom_ref.torch + LossScaler", "torch SGD fused + GradScaler", 1.10),
    Target("ref-optax, jit", "optax sgd, jit", 1.05),
    Target("ref-optax, jit, donated", "optax sgd, jit, donated", 1.05),
    Target("ref-optax + loss_scaling, jit, donated", "ref-optax, jit, donated", 1.20),
]


def pair_ratios(rows: dict[str, Any], target: Target) -> list[float] | None:
    """``ours / theirs`` per round (``None`` if either row did not run, or the results predate
    the per-round medians)."""
    if not all("round_medians_s" in rows.get(name, {}) for name in target[:2]):
        return None
    ours, theirs = rows[target.ours]["round_medians_s"], rows[target.theirs]["round_medians_s"]
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def targets_table(result: dict[str, Any]) -> str:
    """One line per target: per workload the median (range) of the round ratios, and whether
    the median is within the limit on every workload that ran both rows."""
    names = list(result["workloads"])
    lines = [
        f"issue 22's targets: ours / theirs within each round, median (range) over rounds; {', '.join(names)}"
    ]
    for target in TARGETS:
        cells, met = [], []
        for w in result["workloads"].values():
            ratios = pair_ratios(w["rows"], target)
            if ratios is None:
                cells.append("not run")
                continue
            median = statistics.median(ratios)
            met.append(median <= target.limit)
            cells.append(f"{median:.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
        verdict = "not run" if not met else ("met" if all(met) else "NOT met")
        lines.append(
            f"  {target.ours} / {target.theirs} <= {target.limit:.2f}: {' | '.join(cells)}: {verdict}"
        )
    return "\n".join(lines)
