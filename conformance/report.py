"""The conformance report: check × outcome with reasons, as JSON and a Markdown table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["OUTCOMES", "classify", "markdown_matrix", "write_report"]

#: Outcomes in report order.
OUTCOMES = ("pass", "fail", "expected deviation", "deviation now passes", "not applicable", "error")


def classify(report: Any) -> tuple[str, str] | None:
    """``(outcome, reason)`` for a pytest test report, ``None`` if it decides nothing."""
    wasxfail = getattr(report, "wasxfail", None)
    if report.when == "call":
        if report.passed:
            return ("deviation now passes", wasxfail) if wasxfail is not None else ("pass", "")
        if report.skipped and wasxfail is not None:
            return "expected deviation", wasxfail
        if report.failed:
            return "fail", _first_line(report)
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        return ("not applicable" if "not applicable" in reason else "skipped"), reason
    if report.failed:
        return "error", _first_line(report)
    return None


def _first_line(report: Any) -> str:
    text = getattr(report, "longreprtext", "") or ""
    errors = [line for line in text.splitlines() if line.startswith("E ")]
    return (errors[0][1:].strip() if errors else text.strip().splitlines()[-1] if text.strip() else "")[:300]


def write_report(directory: Path, header: Mapping[str, Any], results: Mapping[str, tuple[str, str]]) -> Path:
    """Write ``<impl>-<backend>.json`` and ``.md`` under ``directory``; returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{header['impl']}-{header['backend']}"
    data = {"header": dict(header), "results": {k: {"outcome": o, "reason": r} for k, (o, r) in results.items()}}
    json_path = directory / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=True))
    lines = [f"# Conformance: {header['impl']} {header['version']} on {header['backend']}", "",
             "| check | outcome | reason |", "| --- | --- | --- |"]
    for check, (outcome, reason) in sorted(results.items()):
        lines.append(f"| `{check}` | {outcome} | {_cell(reason)} |")
    counts = {o: sum(1 for v in results.values() if v[0] == o) for o in OUTCOMES}
    lines += ["", ", ".join(f"{o}: {c}" for o, c in counts.items() if c)]
    (directory / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return json_path


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_matrix(reports: Iterable[Mapping[str, Any]]) -> str:
    """One table: a row per check, a column per implementation/backend."""
    reports = list(reports)
    columns = [f"{r['header']['impl']} ({r['header']['backend']})" for r in reports]
    checks = sorted({c for r in reports for c in r["results"]})
    short = {"pass": "pass", "fail": "**FAIL**", "expected deviation": "deviation",
             "deviation now passes": "**deviation passes**", "not applicable": "n/a", "error": "**ERROR**"}
    lines = ["| check | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for check in checks:
        cells = []
        for r in reports:
            entry = r["results"].get(check)
            cells.append("" if entry is None else short.get(entry["outcome"], entry["outcome"]))
        lines.append(f"| `{check}` | " + " | ".join(cells) + " |")
    notes = ["", "Reasons for deviations and n/a entries:", ""]
    for r, col in zip(reports, columns, strict=True):
        for check, entry in sorted(r["results"].items()):
            if entry["outcome"] in ("expected deviation", "not applicable", "deviation now passes", "fail"):
                notes.append(f"- {col} `{check}`: {entry['outcome']}: {_cell(entry['reason'])}")
    return "\n".join(lines + notes) + "\n"
