"""The fuzz's quirk rules: each names a row of docs/quirks.md that exists and names a test."""

from __future__ import annotations

import re
from pathlib import Path

from differential import quirks

QUIRKS_MD = Path(__file__).resolve().parents[2] / "docs" / "quirks.md"


def test_every_rule_points_at_a_row_with_a_test() -> None:
    rows = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^\| (\d+) \|.*\| ([^|]*) \|$", QUIRKS_MD.read_text(), re.MULTILINE)
    }
    for rule in quirks.RULES:
        row = int(re.match(r"quirks\.md row (\d+) ", rule).group(1))
        assert row in rows, rule
        assert "test_" in rows[row], (rule, rows[row])
