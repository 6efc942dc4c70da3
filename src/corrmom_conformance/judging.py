"""Judging checks against an implementation's declared deviations.

At collection, :func:`assign_deviations` gives each applicable check the
declared deviation that names it (one parametrisation first, then the whole
function) and returns the declared entries no check took (stale). After a
check ran, :func:`judge` applies the declaration: a check with ``match``
that fails with the failure it names becomes an *expected deviation*, one that
fails otherwise stays a failure (marked as a mismatch), one that passes is a
*deviation now passes*; a check with only ``without`` must simply pass (its
state machine leaves the named rules out: :func:`rules_left_out`). The
declarations themselves are read by :mod:`corrmom_conformance.deviations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corrmom_conformance import deviations
from corrmom_conformance.run_state import RunState, current_run
from corrmom_conformance.search_budget import without_shrinking


def assign_deviations(checks: list[pytest.Item], adapter: Any, run: RunState) -> list[str]:
    """Record in ``run`` the declared deviation of each of ``checks``; return the stale declarations.

    A declaration with ``match`` also turns shrinking off for its check.
    ``pytest.UsageError`` names the adapter if its declarations cannot be read.
    """
    try:
        declared = deviations.load(adapter.name, getattr(adapter, "expected_deviations", None))
    except ValueError as error:
        raise pytest.UsageError(f"expected deviations of {adapter.name}: {error}") from error
    by_key = {d.check: d for d in declared}
    used: set[str] = set()
    run.deviation_of = {}
    for item in checks:
        stem = Path(str(item.fspath)).stem
        keys = [deviations.check_key(stem, item.name)]  # one parametrisation first
        keys.append(deviations.check_key(stem, getattr(item, "originalname", item.name)))
        key = next((k for k in keys if k in by_key), None)
        if key is not None:
            used.add(key)
            run.deviation_of[item.nodeid] = by_key[key]
            if by_key[key].match is not None:
                without_shrinking(item, run)
    return sorted(set(by_key) - used)


def judge(item: pytest.Item, call: pytest.CallInfo[None], rep: pytest.TestReport, run: RunState) -> None:
    """Apply the check's declared deviation, if it has one with ``match``, to its call's report ``rep``."""
    deviation = run.deviation_of.get(item.nodeid)
    if deviation is None or deviation.match is None:  # none, or 'without': the check must simply pass
        return
    if rep.passed:
        rep.wasxfail = deviation.reason  # reported as "deviation now passes"
    elif rep.failed and call.excinfo is not None:
        failure = f"{call.excinfo.typename}: {call.excinfo.value}"
        if deviation.matches(failure):
            rep.outcome = "skipped"
            rep.wasxfail = deviation.reason
        else:
            rep.user_properties.append(
                ("mismatch", f"fails otherwise than its declared deviation (match {deviation.match!r})")
            )


def rules_left_out(nodeid_part: str = "test_state_machine") -> frozenset[str]:
    """State-machine rules a declared deviation leaves out (its ``without``)."""
    out: set[str] = set()
    for nodeid, deviation in current_run().deviation_of.items():
        if nodeid_part in nodeid:
            out |= set(deviation.without)
    return frozenset(out)
