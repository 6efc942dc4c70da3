"""Prints the kill rate per family after the mutant runs (see :mod:`tests.conformance_meta.kill_rates`)."""

from __future__ import annotations

from typing import Any

from tests.conformance_meta.kill_rates import RESULTS, summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESULTS:
        terminalreporter.section("conformance suite: mutants killed per family")
        for line in summary(RESULTS):
            terminalreporter.write_line(line)
