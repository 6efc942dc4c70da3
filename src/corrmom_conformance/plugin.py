"""The pytest plugin: the suite's options, and its hooks in the order pytest calls them.

Opt-in: installing the package registers nothing with pytest. A run of the
suite names the plugin and the checks::

    pytest -p corrmom_conformance.plugin --pyargs corrmom_conformance.checks --corrmom-impl=chainer

(``nox -s conformance`` does this). Its options are namespaced (``--corrmom-*``),
so a project's own ``--impl`` or ``--backend`` never clashes with them, and
Hypothesis (the ``[test]`` extra) is imported only when the checks are.

The hooks only sequence the run; each job is a module of its own:

* the run's state, one per pytest config: :mod:`corrmom_conformance.run_state`;
* the Hypothesis profile, seed and shrinking budget:
  :mod:`corrmom_conformance.search_budget` (the cap set through Hypothesis'
  private engine: :mod:`corrmom_conformance.shrink_cap`);
* declared deviations applied to the checks: :mod:`corrmom_conformance.judging`;
* the report, with reproducers: :mod:`corrmom_conformance.recording`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from corrmom_conformance import judging, recording, run_state, search_budget
from corrmom_conformance.backends import SUITE_BACKENDS
from corrmom_conformance.report import NA_PREFIX

CHECKS_DIR = Path(__file__).parent / "checks"


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


def _impl_named(config: pytest.Config) -> bool:
    """Whether the run names its implementation (``--corrmom-impl`` or ``$CORRMOM_CONFORMANCE_IMPL``)."""
    return bool(config.getoption("corrmom_impl") or os.environ.get("CORRMOM_CONFORMANCE_IMPL"))


def _active(config: pytest.Config) -> bool:
    """Whether this pytest run is a conformance run (``--impl``, the variable, or the checks named)."""
    if _impl_named(config):
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
    run = run_state.begin(config)
    if _active(config):
        search_budget.fix_seed(config, run)
        search_budget.bound_shrinking(config, run)
    # registered (Hypothesis imported) when the checks are imported: see search_budget.load_profile
    run.profile_options = (config.getoption("corrmom_thorough"), config.getoption("corrmom_no_shrink"))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not _impl_named(config):
        args = " ".join(str(a) for a in config.args)
        if "conformance" not in args:
            return None
    try:
        adapter = run_state.adapter_of(config)
    except Exception as error:  # the header must not hide the real error, collection reports it
        return [f"corrmom conformance: cannot load the implementation: {error}"]
    run = run_state.run_of(config)
    profile = run.profile or "conformance-fast"
    seed = config.getoption("hypothesis_seed", default=None)
    drawn = " (drawn for this run; rerun with --hypothesis-seed to repeat it)" if run.seed_drawn else ""
    chosen = []
    if not _impl_named(config):
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


def _is_check(item: pytest.Item) -> bool:
    return CHECKS_DIR in Path(str(item.fspath)).parents


def _lacks_capabilities(item: pytest.Item, adapter: Any) -> bool:
    """Mark ``item`` skipped, *not applicable*, if the adapter lacks a capability it ``requires``."""
    needed = {c for marker in item.iter_markers("requires") for c in marker.args}
    missing = sorted(needed - set(adapter.capabilities))
    if missing:
        item.add_marker(pytest.mark.skip(reason=NA_PREFIX + "lacks capability " + ", ".join(missing)))
    return bool(missing)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    adapter = run_state.adapter_of(config)
    run = run_state.run_of(config)
    run.check_ids = {item.nodeid for item in checks}
    applicable = [item for item in checks if not _lacks_capabilities(item, adapter)]
    stale = judging.assign_deviations(applicable, adapter, run)
    for key in stale:
        warnings.warn(
            f"expected deviation {key!r} of {adapter.name} matches no collected check", stacklevel=1
        )
    run.report = recording.new_report(adapter, run, config, stale)


@pytest.fixture(scope="session")
def adapter(pytestconfig: pytest.Config) -> Any:
    """The implementation under test (see :mod:`corrmom_conformance.protocol`)."""
    return run_state.adapter_of(pytestconfig)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    run = run_state.run_of(item.config)
    if item.nodeid in run.check_ids:
        search_budget.start_check(item, run)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Charge a failure's time to its family, keep what a reproducer needs, judge a declared deviation."""
    outcome = yield
    run = run_state.run_of(item.config)
    if call.when != "call" or item.nodeid not in run.check_ids:
        return
    rep = outcome.get_result()
    if rep.failed:
        search_budget.charge_failure(item, run, call.duration)
    recording.keep_for_reproducer(item, rep)
    judging.judge(item, call, rep, run)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # pytest passes no config to this hook: the innermost run in progress
    recording.record(run_state.current_run(), report)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rep = run_state.run_of(config).report
    if rep is None:
        return
    terminalreporter.section("corrmom conformance")
    for line in recording.summary_lines(rep, tested_by_default=not _impl_named(config)):
        terminalreporter.write_line(line)
    path = config.getoption("corrmom_report")
    if path:
        json_path, md_path = rep.write(path)
        terminalreporter.write_line(f"report: {json_path} and {md_path}")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = run_state.end(config)
    if run is not None:
        search_budget.release(run)
