"""One conformance run's state, and how code outside pytest's hooks finds it.

The run's state (the adapter, the declared deviations, the report, the seed
and the shrinking budget) is one :class:`RunState` in ``config.stash[RUN]``.
Code that cannot reach the config (the check package's import, Hypothesis'
state machines, pytest's ``pytest_runtest_logreport``, a reproducer script)
finds the run in progress through :func:`current_run`: runs nest (a pytest run
started inside another one), the innermost is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from corrmom_conformance.deviations import Deviation
from corrmom_conformance.report import Report


@dataclass(eq=False)  # one run is one object: found by identity
class RunState:
    """What one conformance run keeps between pytest's hooks.

    Attributes:
        config: The pytest config (``None`` in a reproducer script).
        adapter: The implementation under test, once resolved.
        check_ids: Node ids of the collected checks.
        deviation_of: The declared deviation of each check that has one, by node id.
        report: The report being filled (``None`` until the checks are collected).
        seed: The Hypothesis seed of the run; ``seed_drawn``: drawn here, not given.
        shrink_seconds: Shrinking time per failing check; ``family_left``: what
            each family has left (``None``: no family budget); ``shrink_bound``:
            whether Hypothesis' engine has the constant this sets.
        profile_options: ``(thorough, no_shrink)``; ``profile``: the Hypothesis profile loaded.
        unshrunk: Ids of the test functions already set to skip shrinking.
    """

    config: pytest.Config | None = None
    adapter: Any = None
    check_ids: set[str] = field(default_factory=set)
    deviation_of: dict[str, Deviation] = field(default_factory=dict)
    report: Report | None = None
    seed: Any = None
    seed_drawn: bool = False
    shrink_seconds: float | None = None
    family_left: dict[str, float] | None = None
    shrink_bound: bool = False
    profile_options: tuple[bool, bool] = (False, False)
    profile: str | None = None
    unshrunk: set[int] = field(default_factory=set)


#: Where a config keeps its run's :class:`RunState`.
RUN = pytest.StashKey[RunState]()

#: The runs in progress, innermost last: :func:`begin` pushes, :func:`end` pops.
_RUNS: list[RunState] = []


def begin(config: pytest.Config) -> RunState:
    """A new run for ``config``, stashed in it and current until :func:`end`."""
    run = RunState(config)
    config.stash[RUN] = run
    _RUNS.append(run)
    return run


def end(config: pytest.Config) -> RunState | None:
    """The run of ``config`` (``None``: it has none), no longer current."""
    run = config.stash.get(RUN, None)
    if run is not None and any(r is run for r in _RUNS):
        _RUNS.remove(run)
    return run


def run_of(config: pytest.Config) -> RunState:
    """The run that ``config`` belongs to."""
    return config.stash[RUN]


def current_run() -> RunState:
    """The state of the conformance run in progress (a fresh one outside pytest: a reproducer script)."""
    if not _RUNS:
        _RUNS.append(RunState())
    return _RUNS[-1]


def standalone(adapter: Any, deviation_of: dict[str, Any] | None = None) -> RunState:
    """Start a run outside pytest (a reproducer script) on ``adapter``, with these declared deviations."""
    run = RunState(adapter=adapter, deviation_of=dict(deviation_of or {}))
    _RUNS.append(run)
    return run


def adapter_of(config: pytest.Config) -> Any:
    """The implementation under test, resolved from ``--corrmom-impl`` and ``--corrmom-backend`` once per run."""
    run = run_of(config)
    if run.adapter is None:
        from corrmom_conformance.adapters import resolve

        try:
            run.adapter = resolve(config.getoption("corrmom_impl"), config.getoption("corrmom_backend"))
        except (ImportError, RuntimeError, ValueError, TypeError) as error:
            raise pytest.UsageError(f"cannot set up the implementation under test: {error}") from error
    return run.adapter


def current_adapter() -> Any:
    """The implementation under test, for code that cannot take fixtures (state machines)."""
    adapter = current_run().adapter
    if adapter is None:
        raise RuntimeError("no conformance run is in progress")
    return adapter
