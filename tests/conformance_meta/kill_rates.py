"""What the mutant runs found, for the summary ``conftest.py`` prints: kill rate and time per family."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One (mutant, family) run: whether a check failed, and the wall time of the pytest process."""

    mutant: str
    family: str
    killed: bool
    seconds: float


#: Filled by ``test_family_rejects_mutant`` as the pairs run.
RESULTS: list[Result] = []


def summary(results: list[Result]) -> list[str]:
    """One line per family: killed / run, the rate, and the mean and longest run time."""
    by_family: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_family[result.family].append(result)
    lines = []
    for family in sorted(by_family):
        runs = by_family[family]
        killed = sum(r.killed for r in runs)
        seconds = [r.seconds for r in runs]
        lines.append(
            f"{family:<20} killed {killed}/{len(runs)} ({100 * killed / len(runs):.0f}%), "
            f"run {sum(seconds) / len(seconds):.1f} s mean, {max(seconds):.1f} s longest"
        )
    total = sum(r.killed for r in results)
    lines.append(
        f"{'all':<20} killed {total}/{len(results)} pairs, {len({r.mutant for r in results})} mutants"
    )
    return lines
