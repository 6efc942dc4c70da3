"""Combine per-implementation reports into one table: ``python -m corrmom_conformance.matrix OUT.md REPORT.json...``.

Exits 1 when a report is missing or shows a failure that is not a declared
expected deviation, so a matrix run in CI fails on any undeclared difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SYMBOLS = {
    "pass": "pass",
    "fail": "**FAIL**",
    "expected deviation": "deviation",
    "deviation now passes": "deviation (now passes)",
    "not applicable": "n/a",
    "error": "**ERROR**",
}


def combine(reports: list[dict]) -> str:
    """A Markdown table: one row per check (parametrisations folded), one column per implementation."""
    columns = [f"{r['impl']} ({r['backend']})" for r in reports]
    cells: dict[str, list[set[str]]] = {}
    for i, report in enumerate(reports):
        for entry in report["entries"]:
            check = entry["check"].split("[", 1)[0].removesuffix(".py")
            row = cells.setdefault(check, [set() for _ in reports])
            row[i].add(entry["outcome"])
    lines = ["| check | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for check in sorted(cells):
        shown = [" / ".join(SYMBOLS[o] for o in sorted(outcomes)) or "-" for outcomes in cells[check]]
        lines.append(f"| `{check}` | " + " | ".join(shown) + " |")
    totals = [", ".join(f"{n} {o}" for o, n in r["counts"].items() if n) for r in reports]
    lines += ["", "Totals: " + "; ".join(f"{c}: {t}" for c, t in zip(columns, totals, strict=True))]
    return "\n".join(lines + _reasons(reports, columns)) + "\n"


def _reasons(reports: list[dict], columns: list[str]) -> list[str]:
    """Why a cell is not a pass: one line per distinct (column, check, outcome, reason)."""
    lines = []
    for column, report in zip(columns, reports, strict=True):
        seen = set()
        for entry in report["entries"]:
            if entry["outcome"] == "pass":
                continue
            check = entry["check"].split("[", 1)[0].removesuffix(".py")
            key = (check, entry["outcome"], entry.get("reason", ""))
            if key not in seen:
                seen.add(key)
                lines.append(f"- {column}, `{check}`: {entry['outcome']}: {key[2] or '(no reason given)'}")
    return ["", "## Reasons", "", *lines] if lines else []


def main(argv: list[str]) -> int:
    out, *paths = argv
    reports = [json.loads(Path(p).read_text()) for p in paths if Path(p).exists()]
    missing = [p for p in paths if not Path(p).exists()]
    text = combine(reports)
    if missing:
        text += "\nNo report (the run could not start here): " + ", ".join(missing) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)
    broken = [
        r["impl"] + " (" + r["backend"] + ")" for r in reports if r["counts"]["fail"] or r["counts"]["error"]
    ]
    if broken or missing:
        print("undeclared failures in: " + ", ".join(broken + missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
