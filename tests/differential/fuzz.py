"""Drive the differential fuzz: Hypothesis generates scenarios, :func:`~differential.lockstep.run` replays them.

:func:`fuzz` runs ``count`` scenarios and returns a :class:`Report`; on a
divergence Hypothesis shrinks the scenario, and the report carries the
shrunk one as a reproducer script. From the command line (Chainer 7.8.1
importable, from the repository root)::

    PYTHONPATH=src:tests python -m differential.fuzz --scenarios 1000

exits 1 and prints the reproducer on a divergence, else prints what ran.
``CORRMOM_DIFFERENTIAL_SCENARIOS`` sets the default count (1000) and
``CORRMOM_DIFFERENTIAL_THOROUGH=1`` multiplies it by ten.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from differential.lockstep import Outcome, run
from differential.scenario import Scenario, reproducer, scenarios

DEFAULT_SCENARIOS = 1000


def default_count() -> int:
    """The scenario count of a default run: the environment's, times ten when thorough."""
    count = int(os.environ.get("CORRMOM_DIFFERENTIAL_SCENARIOS", DEFAULT_SCENARIOS))
    if os.environ.get("CORRMOM_DIFFERENTIAL_THOROUGH", "") not in ("", "0"):
        count *= 10
    return count


class DivergenceError(AssertionError):
    """A scenario on which Chainer and corrmom_ref differ."""

    def __init__(self, scenario: Scenario, outcome: Outcome) -> None:
        self.scenario = scenario
        self.outcome = outcome
        super().__init__(outcome.divergence)


@dataclass
class Report:
    """What a fuzz run did and found.

    Attributes:
        scenarios: Scenarios replayed (shrinking included).
        operations: Operations applied to both sides and compared.
        quirks: Scenarios whose comparison a documented quirk ended, by rule.
        seconds: Wall time.
        divergence: The shrunk failing scenario's outcome, if any.
        script: Its reproducer script.
    """

    scenarios: int = 0
    operations: int = 0
    quirks: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    divergence: str | None = None
    script: str | None = None

    def summary(self) -> str:
        quirks = ", ".join(f"{n} x {rule}" for rule, n in sorted(self.quirks.items())) or "none"
        found = "no divergence" if self.divergence is None else "DIVERGENCE"
        return (
            f"{self.scenarios} scenarios, {self.operations} operations compared bitwise in "
            f"{self.seconds:.1f} s: {found}; ended early by documented quirks: {quirks}"
        )


def fuzz(count: int, *, cr: Any = None, random_seed: int | None = None, shrink: bool = True) -> Report:
    """Replay ``count`` generated scenarios in lockstep; the :class:`Report`."""
    report = Report()
    phases = ("explicit", "generate", "shrink") if shrink else ("explicit", "generate")

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(scenarios())
    def check(scenario: Scenario) -> None:
        outcome = run(scenario, cr)
        report.scenarios += 1
        report.operations += outcome.ops_run
        if outcome.divergence is not None:
            raise DivergenceError(scenario, outcome)
        if outcome.quirk is not None:
            report.quirks[outcome.quirk] += 1

    if random_seed is not None:
        check = seed(random_seed)(check)
    start = time.perf_counter()
    try:
        check()
    except DivergenceError as found:
        report.divergence = f"operation {found.outcome.step}: {found.outcome.divergence}"
        report.script = reproducer(
            _trimmed(found.scenario, found.outcome.step), report.divergence.splitlines()[0]
        )
    finally:
        report.seconds = time.perf_counter() - start
    return report


def _trimmed(scenario: Scenario, step: int) -> Scenario:
    """``scenario`` without what cannot matter to a divergence at operation ``step``: the
    operations after it, and gradient operations that set nothing (scenarios have at least
    six operations, so the shrinker pads with those)."""
    ops = scenario.ops if step < 0 else scenario.ops[: step + 1]
    return replace(scenario, ops=tuple(op for op in ops if op != ("grads", ())))


def main(argv: list[str] | None = None) -> int:
    """The command line: run the fuzz, print the summary (and the reproducer); 1 on a divergence."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=None, help=f"default {DEFAULT_SCENARIOS}")
    parser.add_argument("--thorough", action="store_true", help="ten times the scenarios")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random)")
    parser.add_argument("--no-shrink", action="store_true", help="report the first failing scenario as found")
    args = parser.parse_args(argv)
    count = default_count() if args.scenarios is None else args.scenarios
    if args.thorough:
        count *= 10
    import corrmom_ref
    from corrmom_ref._step.kernels import numba as numba_update

    print(
        f"corrmom_ref from {os.path.dirname(corrmom_ref.__file__)}; "
        f"Numba loop {'on' if numba_update.available() else 'off'}",
        flush=True,
    )
    report = fuzz(count, random_seed=args.seed, shrink=not args.no_shrink)
    print(report.summary())
    if report.divergence is not None:
        print(report.divergence)
        print(
            "---- minimal reproducer (shrunk) ----"
            if not args.no_shrink
            else "---- reproducer (not shrunk) ----"
        )
        print(report.script)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
