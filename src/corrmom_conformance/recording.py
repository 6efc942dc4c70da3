"""Recording a run in its :class:`~corrmom_conformance.report.Report`: one outcome per check, with reproducers.

:func:`new_report` starts the report once the checks are collected (the
implementation, the seed, the command, the versions); :func:`keep_for_reproducer`
stores on a check's pytest report what a reproducer of its failure needs;
:func:`record` turns each pytest report of a check into its outcome (pass,
fail, expected deviation, deviation now passes, not applicable, error) and
:func:`summary_lines` into the lines of the terminal summary.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corrmom_conformance.report import NA_PREFIX, Report
from corrmom_conformance.run_state import RunState


def new_report(adapter: Any, run: RunState, config: pytest.Config, stale: list[str]) -> Report:
    """An empty report of this run on ``adapter``; ``stale``: the declared deviations no check took."""
    return Report(
        adapter.name,
        adapter.version,
        adapter.backend,
        sorted(adapter.capabilities),
        stale_deviations=stale,
        seed=str(run.seed),
        command=shlex.join(["pytest", *config.invocation_params.args]),
        versions=_versions(),
    )


def _versions() -> dict[str, str]:
    """Versions of what the run's numbers depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("numpy", "hypothesis", "pytest"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


def keep_for_reproducer(item: pytest.Item, rep: pytest.TestReport) -> None:
    """Store on ``rep`` the check's parameters, fixtures, file and function (:func:`record` reads them)."""
    callspec = getattr(item, "callspec", None)
    rep.user_properties.append(("params", dict(callspec.params) if callspec is not None else {}))
    rep.user_properties.append(("fixtures", list(getattr(item, "fixturenames", []))))
    rep.user_properties.append(("path", str(item.path)))
    rep.user_properties.append(("function", getattr(item, "originalname", item.name)))


def record(run: RunState, report: pytest.TestReport) -> None:
    """Record the outcome that pytest's ``report`` of a check stands for (other reports are ignored)."""
    rep = run.report
    if rep is None or report.nodeid not in run.check_ids:
        return
    check = report.nodeid.split("checks/", 1)[-1]
    if report.when == "call" and not (report.skipped and not hasattr(report, "wasxfail")):
        props = dict(report.user_properties)
        if hasattr(report, "wasxfail"):
            outcome = "deviation now passes" if report.passed else "expected deviation"
            rep.record(check, outcome, report.wasxfail)
        elif report.passed:
            deviation = run.deviation_of.get(report.nodeid)
            note = f"without {', '.join(deviation.without)}: {deviation.reason}" if deviation else ""
            rep.record(check, "pass", note)
        else:
            reason = failure_reason(report)
            if "mismatch" in props:
                reason = f"{props['mismatch']}: {reason}"
            rep.record(check, "fail", reason, _reproduce(run, report, props))
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if hasattr(report, "wasxfail"):
            rep.record(check, "expected deviation", report.wasxfail)
        elif reason.startswith(NA_PREFIX):
            rep.record(check, "not applicable", reason.removeprefix(NA_PREFIX))
        else:
            rep.record(check, "not applicable", reason)
    elif report.failed:
        rep.record(check, "error", failure_reason(report))


def _reproduce(run: RunState, report: pytest.TestReport, props: dict[str, Any]) -> dict[str, str]:
    """The failure's reproducer: a command with the run's seed and a stand-alone script."""
    from corrmom_conformance import reproducer

    config = run.config
    assert config is not None
    impl = config.getoption("corrmom_impl") or os.environ.get("CORRMOM_CONFORMANCE_IMPL") or "ref"
    options = [f"--corrmom-impl={impl}", f"--corrmom-backend={config.getoption('corrmom_backend')}"]
    if config.getoption("corrmom_thorough"):
        options.append("--corrmom-thorough")
    path = str(props.get("path", report.fspath))
    name = report.nodeid.split("::", 1)[-1]
    return {
        "command": reproducer.command(path, name, options, run.seed),
        "script": reproducer.script(
            Path(path).stem,
            str(props.get("function", name.split("[")[0])),
            impl,
            config.getoption("corrmom_backend"),
            dict(props.get("params", {})),
            report.longreprtext,
            "tmp_path" in props.get("fixtures", []),
        ),
    }


def failure_reason(report: pytest.TestReport) -> str:
    """The first line of the exception that failed the check (``AssertionError: ...``), from pytest's report.

    pytest keeps it as ``report.longrepr.reprcrash.message``; a report without
    a crash entry (a plain-text long representation) gives its last line.
    """
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message.strip():
        return crash.message.strip().splitlines()[0].strip()
    text = report.longreprtext.strip()
    return text.splitlines()[-1] if text else ""


def summary_lines(rep: Report, tested_by_default: bool) -> Iterator[str]:
    """The terminal summary of the run: counts per family, the seed, reproducers, stale and passing deviations."""
    if tested_by_default:
        yield "the reference was tested: no --corrmom-impl given"
    yield f"{rep.impl} {rep.version} on {rep.backend}: {rep.summary_line()}"
    for family, counts in rep.family_counts().items():
        yield f"  {family}: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    yield f"hypothesis seed: {rep.seed}"
    for entry in rep.entries.values():
        if entry.outcome == "fail" and entry.reproducer:
            yield f"  reproduce {entry.check}: {entry.reproducer['command']}"
    for entry in rep.entries.values():
        if entry.outcome == "deviation now passes":
            yield f"  deviation now passes (update the deviations file): {entry.check}"
    for key in rep.stale_deviations:
        yield f"  stale expected deviation: {key}"
