"""The pytest plugin: options, the ``adapter`` fixture, capabilities, deviations, the report.

Opt-in: installing the package registers nothing with pytest. A run of the
suite names the plugin and the checks::

    pytest -p corrmom_conformance.plugin --pyargs corrmom_conformance.checks --corrmom-impl=chainer

(``nox -s conformance`` does this). Its options are namespaced (``--corrmom-*``),
so a project's own ``--impl`` or ``--backend`` never clashes with them, and
Hypothesis (the ``[test]`` extra) is imported only when the checks are.

The run's state (the adapter, the declared deviations, the report, the
seed and the shrinking budget) is one :class:`RunState` in
``config.stash[RUN]``. Code that cannot reach the config (the check package's
import, Hypothesis' state machines, a reproducer script) finds the current
run through :func:`current_run`.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corrmom_conformance import deviations as deviations_module
from corrmom_conformance.backends import SUITE_BACKENDS
from corrmom_conformance.report import Report

CHECKS_DIR = Path(__file__).parent / "checks"
NA_PREFIX = "not applicable: "


@dataclass(eq=False)  # one run is one object: found by identity
class RunState:
    """What one conformance run keeps between pytest's hooks.

    Attributes:
        config: The pytest config (``None`` in a reproducer script).
        adapter: The implementation under test, once resolved.
        check_ids: Node ids of the collected checks.
        deviation_of: The declared deviation of each check that has one, by node id.
        report: The report being filled (``None`` until the checks are collected).
        seed: The Hypothesis seed of the run; ``seed_drawn``: drawn here, not given.
        shrink_seconds: Shrinking time per failing check; ``family_left``: what
            each family has left (``None``: no family budget); ``shrink_bound``:
            whether Hypothesis' engine has the constant this sets.
        profile_options: ``(thorough, no_shrink)``; ``profile``: the Hypothesis profile loaded.
        unshrunk: Ids of the test functions already set to skip shrinking.
    """

    config: pytest.Config | None = None
    adapter: Any = None
    check_ids: set[str] = field(default_factory=set)
    deviation_of: dict[str, deviations_module.Deviation] = field(default_factory=dict)
    report: Report | None = None
    seed: Any = None
    seed_drawn: bool = False
    shrink_seconds: float | None = None
    family_left: dict[str, float] | None = None
    shrink_bound: bool = False
    profile_options: tuple[bool, bool] = (False, False)
    profile: str | None = None
    unshrunk: set[int] = field(default_factory=set)


#: Where a config keeps its run's :class:`RunState`.
RUN = pytest.StashKey[RunState]()

#: The runs in progress, innermost last: a pytest run pushes its state in
#: ``pytest_configure`` and pops it in ``pytest_unconfigure``.
_RUNS: list[RunState] = []


def current_run() -> RunState:
    """The state of the conformance run in progress (a fresh one outside pytest: a reproducer script)."""
    if not _RUNS:
        _RUNS.append(RunState())
    return _RUNS[-1]


def _run(config: pytest.Config) -> RunState:
    return config.stash[RUN]


def standalone(adapter: Any, deviation_of: dict[str, Any] | None = None) -> RunState:
    """Start a run outside pytest (a reproducer script) on ``adapter``, with these declared deviations."""
    run = RunState(adapter=adapter, deviation_of=dict(deviation_of or {}))
    _RUNS.append(run)
    return run


#: The suite's options; each is ``--corrmom-NAME`` (``nox -s conformance`` also takes ``--NAME``).
OPTIONS = ("impl", "backend", "thorough", "report", "no-shrink", "shrink-seconds")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("corrmom conformance")
    group.addoption(
        "--corrmom-impl",
        default=None,
        help="implementation: a registered adapter (ref, chainer, torch, optax), 'package.module:factory', "
        "or $CORRMOM_CONFORMANCE_IMPL; default ref",
    )
    group.addoption(
        "--corrmom-backend",
        default=os.environ.get("CORRMOM_CONFORMANCE_BACKEND", "numpy"),
        help=f"array backend for --corrmom-impl=ref: {', '.join(SUITE_BACKENDS)} (default numpy)",
    )
    group.addoption(
        "--corrmom-thorough", action="store_true", help="many more generated cases per check (slow)"
    )
    group.addoption("--corrmom-report", default=None, help="write the report to PATH.json and PATH.md")
    group.addoption(
        "--corrmom-shrink-seconds",
        type=float,
        default=None,
        help="at most this long shrinking each failing check (default 4, and 8 for all the failing checks "
        "of one family together; with --thorough 300 each, Hypothesis' own limit)",
    )
    group.addoption(
        "--corrmom-no-shrink",
        action="store_true",
        help="report the first counterexample found without shrinking it (quick pass/fail runs)",
    )


#: Seconds of shrinking per failing check, by default and with ``--thorough``.
SHRINK_SECONDS = {"fast": 4.0, "thorough": 300.0}
#: Seconds that the failing checks of one family may take in all (default runs only):
#: once spent, the family's further failures shrink for at most half a second each.
FAMILY_FAILURE_SECONDS = 8.0


def _active(config: pytest.Config) -> bool:
    """Whether this pytest run is a conformance run (``--impl``, the variable, or the checks named)."""
    if config.getoption("corrmom_impl") or os.environ.get("CORRMOM_CONFORMANCE_IMPL"):
        return True
    args = " ".join(str(a) for a in config.args)
    return "corrmom_conformance.checks" in args or "conformance/checks" in args


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): the check needs these adapter capabilities")
    if importlib.util.find_spec("hypothesis") is None:
        raise pytest.UsageError(
            "the corrmom conformance suite needs Hypothesis: pip install hypothesis "
            "(or run without -p corrmom_conformance.plugin)"
        )
    run = RunState(config)
    config.stash[RUN] = run
    _RUNS.append(run)
    if _active(config):
        _fix_seed(config)
        _bound_shrinking(config)
    # registered (Hypothesis imported) when the checks are imported: see load_profile
    run.profile_options = (config.getoption("corrmom_thorough"), config.getoption("corrmom_no_shrink"))


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is not None and any(r is run for r in _RUNS):
        _RUNS.remove(run)
    if run is not None and run.shrink_bound:
        from hypothesis.internal.conjecture import engine

        if isinstance(getattr(engine, "report", None), _ShrinkCapReport) and engine.report.run is run:
            engine.report = engine.report.original


def register_profiles(thorough: bool = False, no_shrink: bool = False) -> str:
    """Register the suite's Hypothesis profiles; return the name of the one to use."""
    from hypothesis import HealthCheck, Phase, settings

    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "print_blob": True}
    # no explain phase by default: it reruns a shrunk failure many times to annotate it
    fast_phases = [p for p in Phase if p is not Phase.explain]
    settings.register_profile("conformance-fast", max_examples=12, phases=fast_phases, **common)
    settings.register_profile("conformance-thorough", max_examples=200, **common)
    profile = "conformance-thorough" if thorough else "conformance-fast"
    if no_shrink:
        settings.register_profile(
            profile + "-no-shrink", settings.get_profile(profile), phases=[Phase.explicit, Phase.generate]
        )
        profile += "-no-shrink"
    return profile


def _fix_seed(config: pytest.Config) -> None:
    """Draw the Hypothesis seed here when none was given, so the report can name it.

    Runs before Hypothesis' own ``pytest_configure`` (``tryfirst``), which
    then forces the seed as if ``--hypothesis-seed`` had been given.
    """
    import random

    if config.getoption("hypothesis_seed", default=None) is None and hasattr(
        config.option, "hypothesis_seed"
    ):
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))
        _run(config).seed_drawn = True
    _run(config).seed = config.getoption("hypothesis_seed", default=None)


def _bound_shrinking(config: pytest.Config) -> None:
    """Cap the time Hypothesis spends shrinking one failure (its own cap is 300 s).

    Hypothesis has no setting for it, so this sets its engine's module
    constant, when present (a Hypothesis without it shrinks as it always does).
    """
    from hypothesis.internal.conjecture import engine

    seconds = config.getoption("corrmom_shrink_seconds")
    if seconds is None:
        seconds = SHRINK_SECONDS["thorough" if config.getoption("corrmom_thorough") else "fast"]
    run = _run(config)
    run.shrink_seconds = seconds
    bounded = config.getoption("corrmom_shrink_seconds") is None and not config.getoption("corrmom_thorough")
    run.family_left = {} if bounded else None
    run.shrink_bound = hasattr(engine, "MAX_SHRINKING_SECONDS")
    if run.shrink_bound and callable(getattr(engine, "report", None)):
        engine.report = _ShrinkCapReport(engine.report, run)


#: How Hypothesis' engine starts the message it prints when shrinking runs past
#: ``MAX_SHRINKING_SECONDS`` (written for its own five-minute cap).
HYPOTHESIS_SLOW_SHRINK = "WARNING: Hypothesis has spent more than five minutes working to shrink"


class _ShrinkCapReport:
    """Hypothesis' ``report`` in its engine, with its slow-shrinking warning replaced by the suite's.

    The suite cuts shrinking after seconds, on purpose; Hypothesis' message
    (five minutes, "PLEASE REPORT THIS") would be wrong. Everything else passes through.
    """

    def __init__(self, original: Any, run: RunState) -> None:
        self.original, self.run = original, run

    def __call__(self, text: Any) -> None:
        if isinstance(text, str) and text.startswith(HYPOTHESIS_SLOW_SHRINK):
            text = (
                f"corrmom conformance: stopped shrinking after the suite's cap of {self.run.shrink_seconds:g} s "
                "(--corrmom-shrink-seconds); the counterexample is smaller than the first one found, "
                "not necessarily minimal"
            )
        self.original(text)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Set this check's shrinking time: the per-check cap, or what its family has left."""
    run = _run(item.config)
    if run.shrink_bound and item.nodeid in run.check_ids:
        from hypothesis.internal.conjecture import engine

        seconds = run.shrink_seconds
        family_left = run.family_left
        if family_left is not None:
            left = family_left.setdefault(_family(item), FAMILY_FAILURE_SECONDS)
            seconds = max(0.5, min(seconds, left))
        engine.MAX_SHRINKING_SECONDS = seconds
    yield


def _family(item: pytest.Item) -> str:
    return Path(str(item.fspath)).stem


def load_profile() -> None:
    """Make the run's Hypothesis profile current.

    Called when :mod:`corrmom_conformance.checks` is imported: ``@given`` binds its
    settings when a check module is imported, so the profile must be loaded
    before that, and only for conformance runs.
    """
    from hypothesis import settings

    run = current_run()  # outside pytest (a reproducer script): the default profile
    if run.profile is None:
        run.profile = register_profiles(*run.profile_options)
    settings.load_profile(run.profile)


def _adapter(config: pytest.Config) -> Any:
    run = _run(config)
    if run.adapter is None:
        from corrmom_conformance.adapters import resolve

        try:
            run.adapter = resolve(config.getoption("corrmom_impl"), config.getoption("corrmom_backend"))
        except (ImportError, RuntimeError, ValueError, TypeError) as error:
            raise pytest.UsageError(f"cannot set up the implementation under test: {error}") from error
    return run.adapter


def _is_check(item: pytest.Item) -> bool:
    return CHECKS_DIR in Path(str(item.fspath)).parents


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    adapter = _adapter(config)
    run = _run(config)
    run.check_ids = {item.nodeid for item in checks}
    try:
        declared = deviations_module.load(adapter.name, getattr(adapter, "expected_deviations", None))
    except ValueError as error:
        raise pytest.UsageError(f"expected deviations of {adapter.name}: {error}") from error
    by_key = {d.check: d for d in declared}
    used: set[str] = set()
    run.deviation_of = {}
    for item in checks:
        needed = {c for marker in item.iter_markers("requires") for c in marker.args}
        missing = sorted(needed - set(adapter.capabilities))
        if missing:
            item.add_marker(pytest.mark.skip(reason=NA_PREFIX + "lacks capability " + ", ".join(missing)))
            continue
        stem = Path(str(item.fspath)).stem
        keys = [deviations_module.check_key(stem, item.name)]  # one parametrisation first
        keys.append(deviations_module.check_key(stem, getattr(item, "originalname", item.name)))
        key = next((k for k in keys if k in by_key), None)
        if key is not None:
            used.add(key)
            run.deviation_of[item.nodeid] = by_key[key]
            if by_key[key].match is not None:
                _without_shrinking(item, run)
    stale = sorted(set(by_key) - used)
    for key in stale:
        warnings.warn(
            f"expected deviation {key!r} of {adapter.name} matches no collected check", stacklevel=1
        )
    run.report = Report(
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


def rules_left_out(nodeid_part: str = "test_state_machine") -> frozenset[str]:
    """State-machine rules a declared deviation leaves out (its ``without``)."""
    out: set[str] = set()
    for nodeid, deviation in current_run().deviation_of.items():
        if nodeid_part in nodeid:
            out |= set(deviation.without)
    return frozenset(out)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep what a reproducer needs; judge a declared deviation: only the failure it names is expected."""
    outcome = yield
    run = _run(item.config)
    if call.when != "call" or item.nodeid not in run.check_ids:
        return
    rep = outcome.get_result()
    family_left = run.family_left
    if rep.failed and family_left is not None:
        family_left[_family(item)] = family_left.get(_family(item), FAMILY_FAILURE_SECONDS) - call.duration
    callspec = getattr(item, "callspec", None)
    rep.user_properties.append(("params", dict(callspec.params) if callspec is not None else {}))
    rep.user_properties.append(("fixtures", list(getattr(item, "fixturenames", []))))
    rep.user_properties.append(("path", str(item.path)))
    rep.user_properties.append(("function", getattr(item, "originalname", item.name)))
    deviation = run.deviation_of.get(item.nodeid)
    if deviation is None or deviation.match is None:  # none, or 'without': the check must simply pass
        return
    if rep.passed:
        rep.wasxfail = deviation.reason  # reported as "deviation now passes"
    elif rep.failed and call.excinfo is not None:
        failure = f"{call.excinfo.typename}: {call.excinfo.value}"
        if deviation.matches(failure):
            rep.outcome = "skipped"
            rep.wasxfail = deviation.reason
        else:
            rep.user_properties.append(
                ("mismatch", f"fails otherwise than its declared deviation (match {deviation.match!r})")
            )


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.getoption("corrmom_impl") and not os.environ.get("CORRMOM_CONFORMANCE_IMPL"):
        args = " ".join(str(a) for a in config.args)
        if "conformance" not in args:
            return None
    try:
        adapter = _adapter(config)
    except Exception as error:  # the header must not hide the real error, collection reports it
        return [f"corrmom conformance: cannot load the implementation: {error}"]
    run = _run(config)
    profile = run.profile or "conformance-fast"
    seed = config.getoption("hypothesis_seed", default=None)
    drawn = " (drawn for this run; rerun with --hypothesis-seed to repeat it)" if run.seed_drawn else ""
    chosen = []
    if not config.getoption("corrmom_impl") and not os.environ.get("CORRMOM_CONFORMANCE_IMPL"):
        chosen = [
            f"corrmom conformance: testing the reference ({adapter.name}) on {adapter.backend}: no --corrmom-impl "
            "given (nor $CORRMOM_CONFORMANCE_IMPL); name yours with --corrmom-impl=package.module:factory"
        ]
    return [
        *chosen,
        f"corrmom conformance: impl={adapter.name} {adapter.version} backend={adapter.backend}",
        f"  capabilities: {', '.join(sorted(adapter.capabilities))}",
        f"  hypothesis profile: {profile}, seed: {seed}{drawn}, "
        f"shrinking at most {'?' if run.shrink_seconds is None else run.shrink_seconds} s per failing check",
    ]


def current_adapter() -> Any:
    """The implementation under test, for code that cannot take fixtures (state machines)."""
    adapter = current_run().adapter
    if adapter is None:
        raise RuntimeError("no conformance run is in progress")
    return adapter


@pytest.fixture(scope="session")
def adapter(pytestconfig: pytest.Config) -> Any:
    """The implementation under test (see :mod:`corrmom_conformance.protocol`)."""
    return _adapter(pytestconfig)


def _without_shrinking(item: pytest.Item, run: RunState) -> None:
    """Run an expected deviation's Hypothesis search without the shrink phase.

    Its failure is expected, so minimising the counterexample only costs time
    (minutes for a state machine); a pass is still found by full generation.
    """
    from hypothesis import Phase, settings

    phases = [p for p in settings.default.phases if p is not Phase.shrink]
    cls = getattr(item, "cls", None)
    if cls is not None and hasattr(cls, "settings"):  # a RuleBasedStateMachine.TestCase
        cls.settings = settings(cls.settings, phases=phases)
        return
    test = getattr(item, "obj", None)
    done = run.unshrunk  # parametrised items share one test function
    if getattr(test, "is_hypothesis_test", False) and id(test) not in done:
        done.add(id(test))
        settings(settings.default, phases=phases)(test)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    run = current_run()  # pytest passes no config to this hook: the innermost run in progress
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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rep = _run(config).report
    if rep is None:
        return
    terminalreporter.section("corrmom conformance")
    if not config.getoption("corrmom_impl") and not os.environ.get("CORRMOM_CONFORMANCE_IMPL"):
        terminalreporter.write_line("the reference was tested: no --corrmom-impl given")
    terminalreporter.write_line(f"{rep.impl} {rep.version} on {rep.backend}: {rep.summary_line()}")
    for family, counts in rep.family_counts().items():
        terminalreporter.write_line(f"  {family}: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n))
    terminalreporter.write_line(f"hypothesis seed: {rep.seed}")
    for entry in rep.entries.values():
        if entry.outcome == "fail" and entry.reproducer:
            terminalreporter.write_line(f"  reproduce {entry.check}: {entry.reproducer['command']}")
    for entry in rep.entries.values():
        if entry.outcome == "deviation now passes":
            terminalreporter.write_line(f"  deviation now passes (update the deviations file): {entry.check}")
    for key in rep.stale_deviations:
        terminalreporter.write_line(f"  stale expected deviation: {key}")
    path = config.getoption("corrmom_report")
    if path:
        json_path, md_path = rep.write(path)
        terminalreporter.write_line(f"report: {json_path} and {md_path}")
