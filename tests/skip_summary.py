"""A pytest plugin for this repository's tests: skips counted per reason instead of listed one by one.

A backend leg skips whole families (a backend without float16, without a
native kernel, ...), each at its own file and line, so pytest's ``-rs`` list
runs to screens. By default (``-r`` without ``s``, see pyproject.toml) this
prints one line per distinct reason with its count; ``-rs`` or ``-ra`` lists
every skip again, and then this prints nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest


def skip_reason(report: pytest.TestReport) -> str:
    """The reason pytest gives for a skipped test, without the ``Skipped: `` prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    chars = config.option.reportchars or ""
    if "s" in chars or "a" in chars or "A" in chars:
        return  # pytest lists each skip itself
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    if not skipped:
        return
    terminalreporter.section("skipped, by reason (-rs lists each)")
    for reason, count in sorted(Counter(map(skip_reason, skipped)).items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count:5d}  {reason}")
