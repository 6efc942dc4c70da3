"""The conformance report: one outcome per check, as JSON and a Markdown table.

Besides the outcomes it records what a reader needs to trust and repeat the
run: the Hypothesis seed actually used, the date, the versions, the command
line, subtotals per family (check module), and for each failure a
reproducer (a command with the seed, and a stand-alone script).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: How the skip reason of a check that does not apply to the implementation starts
#: (``pytest.skip(NA_PREFIX + reason)``); the report records the rest as *not applicable*.
NA_PREFIX = "not applicable: "

#: Outcomes, in the order the summary lists them.
OUTCOMES = ("pass", "fail", "expected deviation", "deviation now passes", "not applicable", "error")


@dataclass
class Entry:
    check: str
    outcome: str
    reason: str = ""
    reproducer: dict[str, str] | None = None

    @property
    def family(self) -> str:
        """The check module, ``test_hooks`` for ``test_hooks.py::test_x``."""
        return self.check.split("::", 1)[0].removesuffix(".py")


@dataclass
class Report:
    impl: str
    version: str
    backend: str
    capabilities: list[str]
    entries: dict[str, Entry] = field(default_factory=dict)
    stale_deviations: list[str] = field(default_factory=list)
    seed: str = ""
    command: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    date: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )

    def record(
        self, check: str, outcome: str, reason: str = "", reproducer: dict[str, str] | None = None
    ) -> None:
        """Record a check's outcome; an error (in teardown, say) replaces an earlier outcome."""
        if check not in self.entries or outcome == "error":
            self.entries[check] = Entry(check, outcome, reason, reproducer)

    def counts(self, family: str | None = None) -> dict[str, int]:
        """Checks per outcome, over all families or one."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for entry in self.entries.values():
            if family is None or entry.family == family:
                counts[entry.outcome] += 1
        return counts

    def family_counts(self) -> dict[str, dict[str, int]]:
        """:meth:`counts` for each family, in name order."""
        return {f: self.counts(f) for f in sorted({e.family for e in self.entries.values()})}

    def summary_line(self) -> str:
        return ", ".join(f"{n} {o}" for o, n in self.counts().items() if n)

    def to_json(self) -> str:
        data = asdict(self)
        data["entries"] = list(data["entries"].values())
        data["counts"] = self.counts()
        data["families"] = self.family_counts()
        return json.dumps(data, indent=2)

    def to_markdown(self) -> str:
        lines = [
            f"### {self.impl} {self.version} ({self.backend})",
            "",
            f"{self.summary_line()}",
            "",
            f"Run {self.date}, Hypothesis seed {self.seed}; "
            + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
            "",
            f"Command: `{self.command}`",
            "",
            "| family | " + " | ".join(OUTCOMES) + " |",
            "| --- |" + " --- |" * len(OUTCOMES),
        ]
        for family, counts in self.family_counts().items():
            lines.append(f"| {family} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
        lines += ["", "| check | outcome | reason |", "| --- | --- | --- |"]
        for check in sorted(self.entries):
            e = self.entries[check]
            reason = e.reason.replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| `{check}` | {e.outcome} | {reason} |")
        if self.stale_deviations:
            lines += ["", "Stale expected deviations (match no check): " + ", ".join(self.stale_deviations)]
        for check in sorted(self.entries):
            e = self.entries[check]
            if e.reproducer:
                lines += ["", f"#### Reproduce `{check}`", "", "```sh", e.reproducer["command"], "```"]
                lines += ["", "```python", e.reproducer["script"].rstrip(), "```"]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.json`` and ``<path>.md``: ``path`` as given with the suffix appended
        (dots in it stay: ``reports/conformance-mysgd.adapter:make_adapter`` gives
        ``reports/conformance-mysgd.adapter:make_adapter.json``); a ``path`` that ends in
        ``.json`` or ``.md`` loses that ending first."""
        base = Path(path)
        if base.suffix in (".json", ".md"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        json_path, md_path = (base.parent / f"{base.name}{ending}" for ending in (".json", ".md"))
        json_path.write_text(self.to_json())
        md_path.write_text(self.to_markdown())
        return json_path, md_path
