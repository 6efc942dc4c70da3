"""Combine per-implementation reports into one table: ``python -m corrmom_conformance.matrix OUT.md REPORT.json...``.

Exits 1 when a report is missing or shows a failure that is not a declared
expected deviation, so a matrix run in CI fails on any undeclared difference.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

#: How each outcome is shown in a cell (the legend under the tables says so too).
SYMBOLS = {
    "pass": "✓",
    "fail": "**FAIL**",
    "expected deviation": "dev",
    "deviation now passes": "dev→✓",
    "not applicable": "n/a",
    "error": "**ERROR**",
}


def column_head(report: dict) -> str:
    """A short column head: the implementation, and for the reference the backend's name only."""
    if report["impl"] != "ref":  # "ref-torch" breaks as "ref-" / "torch", one short word a line
        return str(report["impl"]).replace("-", "-<br>")
    backend = str(report["backend"]).split(" + ")[-1].split()[0].split(":")[0]
    return f"ref<br>{backend.replace('array_api_strict', 'strict')}"


def column_title(report: dict) -> str:
    """The column's full name, shown on hover and in the legend."""
    version = f" {report['version']}" if report.get("version") else ""
    return f"{report['impl']}{version} on {report['backend']}"


def _family_and_check(check: str) -> tuple[str, str]:
    """``test_hooks.py::test_x[p]`` -> (``test_hooks``, ``test_x``): parametrisations folded."""
    module, _, name = check.split("[", 1)[0].partition("::")
    return module.removesuffix(".py"), name


def _family_title(module: str) -> str:
    return module.removeprefix("test_").replace("_", " ").capitalize()


def _readable(name: str) -> str:
    """A check name as words (it wraps at spaces); ``TestX::runTest`` becomes ``TestX``."""
    return name.split("::")[0].removeprefix("test_").replace("_", " ")


def _cell(outcomes: set[str]) -> str:
    return " / ".join(SYMBOLS[o] for o in sorted(outcomes)) or "·"


def _abbr(text: str, title: str) -> str:
    return f'<abbr title="{html.escape(title)}">{text}</abbr>'


def combine(reports: list[dict]) -> str:
    """Markdown: a legend of the columns, then one table per check family, then the reasons.

    Rows are checks (parametrisations folded into one row), columns are
    implementations with short heads; the full implementation and the full
    check id show on hover (``<abbr title>``), so each table fits a page.
    """
    heads = [_abbr(column_head(r), column_title(r)) for r in reports]
    cells: dict[str, dict[str, list[set[str]]]] = {}
    for i, report in enumerate(reports):
        for entry in report["entries"]:
            module, name = _family_and_check(entry["check"])
            row = cells.setdefault(module, {}).setdefault(name, [set() for _ in reports])
            row[i].add(entry["outcome"])
    lines = ["| column | implementation | totals |", "| --- | --- | --- |"]
    for head, report in zip(heads, reports, strict=True):
        totals = ", ".join(f"{n} {o}" for o, n in report["counts"].items() if n)
        lines.append(
            f"| {head.replace('-<br>', '-').replace('<br>', ' ')} | {html.escape(column_title(report))} | {totals} |"
        )
    legend = ", ".join(f"{symbol} {outcome}" for outcome, symbol in SYMBOLS.items())
    lines += ["", f"Cells: {legend}; · not run. Hover a column head or a check for its full name.", ""]
    for module in sorted(cells):
        lines += [f"**{_family_title(module)}** (`{module}.py`)", ""]
        lines += ["| check | " + " | ".join(heads) + " |", "| --- |" + " :-: |" * len(reports)]
        for name in sorted(cells[module]):
            check = _abbr(_readable(name), f"{module}.py::{name}")
            lines.append(f"| {check} | " + " | ".join(_cell(o) for o in cells[module][name]) + " |")
        lines.append("")
    return "\n".join(lines + _reasons(reports)) + "\n"


def _reasons(reports: list[dict]) -> list[str]:
    """Why a cell is not a pass: per column, one line per (outcome, reason) naming its checks."""
    lines = []
    for report in reports:
        grouped: dict[tuple[str, str], list[str]] = {}
        for entry in report["entries"]:
            if entry["outcome"] == "pass":
                continue
            module, name = _family_and_check(entry["check"])
            checks = grouped.setdefault((entry["outcome"], entry.get("reason", "")), [])
            if f"`{module}::{name}`" not in checks:
                checks.append(f"`{module}::{name}`")
        for (outcome, reason), checks in grouped.items():
            column = html.escape(column_title(report))
            lines.append(f"- {column}: {outcome} ({reason or 'no reason given'}): {', '.join(checks)}")
    return ["**Why a cell is not a pass**", "", *lines] if lines else []


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
