"""docs/reliability.md names tests that exist: every ``test_x.py::test_name`` it cites is defined.

A citation is a code span holding ``[tests/]test_x.py`` optionally followed
by ``::test_name``; a span ``::test_name`` alone refers to the last file cited
before it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "reliability.md"
CITATION = re.compile(r"`(?:tests/)?(?P<file>(?:[\w/]+/)?test_\w+\.py)?(?:::(?P<test>\w+))?(?:\[[^\]`]*\])?`")


def citations() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in CITATION.finditer(PAGE.read_text(encoding="utf-8")):
        file, test = match.group("file"), match.group("test")
        if file is None and test is None:
            continue
        if file is not None:
            current = file
        assert current is not None, f"{match.group(0)} cites a test before any file"
        found.append((current, test))
    return found


def test_every_cited_test_exists() -> None:
    cited = citations()
    assert len(cited) >= 10  # the Snapshots section alone cites more
    missing = []
    for file, test in cited:
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(f"tests/{file}")
        elif test is not None and not re.search(rf"^def {test}\(", path.read_text(encoding="utf-8"), re.M):
            missing.append(f"tests/{file}::{test}")
    assert missing == []
