"""The conformance report: one outcome per check, as JSON and a Markdown table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Outcomes, in the order the summary lists them.
OUTCOMES = ("pass", "fail", "expected deviation", "deviation now passes", "not applicable", "error")


@dataclass
class Entry:
    check: str
    outcome: str
    reason: str = ""


@dataclass
class Report:
    impl: str
    version: str
    backend: str
    capabilities: list[str]
    entries: dict[str, Entry] = field(default_factory=dict)
    stale_deviations: list[str] = field(default_factory=list)

    def record(self, check: str, outcome: str, reason: str = "") -> None:
        """Record a check's outcome; an error (in teardown, say) replaces an earlier outcome."""
        if check not in self.entries or outcome == "error":
            self.entries[check] = Entry(check, outcome, reason)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for entry in self.entries.values():
            counts[entry.outcome] += 1
        return counts

    def summary_line(self) -> str:
        return ", ".join(f"{n} {o}" for o, n in self.counts().items() if n)

    def to_json(self) -> str:
        data = asdict(self)
        data["entries"] = list(data["entries"].values())
        data["counts"] = self.counts()
        return json.dumps(data, indent=2)

    def to_markdown(self) -> str:
        lines = [
            f"### {self.impl} {self.version} ({self.backend})",
            "",
            f"{self.summary_line()}",
            "",
            "| check | outcome | reason |",
            "| --- | --- | --- |",
        ]
        for check in sorted(self.entries):
            e = self.entries[check]
            reason = e.reason.replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| `{check}` | {e.outcome} | {reason} |")
        if self.stale_deviations:
            lines += ["", "Stale expected deviations (match no check): " + ", ".join(self.stale_deviations)]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.json`` and ``<path>.md`` (``path`` without suffix)."""
        base = Path(path)
        if base.suffix in (".json", ".md"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
        json_path.write_text(self.to_json())
        md_path.write_text(self.to_markdown())
        return json_path, md_path
