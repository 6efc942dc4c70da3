"""Expected deviations: one reviewed TOML file per implementation.

``conformance/expected_deviations/<impl>.toml`` holds entries::

    [[deviation]]
    check = "test_loss_scaling.py::test_resume_*"   # fnmatch pattern on the test id
    reason = "why this implementation deliberately differs"

A matching check is run as an expected failure: it shows as *expected
deviation*, and if it passes, as *deviation now passes*. An entry that
matches no collected check is reported as stale.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Deviation", "load_deviations"]

DIRECTORY = Path(__file__).parent / "expected_deviations"


@dataclass(frozen=True)
class Deviation:
    """One declared difference of an implementation."""

    check: str
    reason: str

    def matches(self, nodeid: str) -> bool:
        """Whether the check pattern matches a test id (compared from the file name on)."""
        tail = nodeid.split("/")[-1]
        return fnmatch.fnmatchcase(tail, self.check) or fnmatch.fnmatchcase(tail.split("[")[0], self.check)


def load_deviations(impl: str) -> list[Deviation]:
    """The declared deviations of ``impl`` (none if it has no file)."""
    path = DIRECTORY / f"{impl}.toml"
    if not path.exists():
        return []
    with path.open("rb") as f:
        data = tomllib.load(f)
    deviations = []
    for entry in data.get("deviation", []):
        if not entry.get("reason"):
            raise ValueError(f"{path}: deviation {entry.get('check')!r} has no reason")
        deviations.append(Deviation(entry["check"], entry["reason"]))
    return deviations
