"""The pytest plugin: options, the ``adapter`` fixture, capabilities, deviations, the report.

Opt-in: installing the package registers nothing with pytest. A run of the
suite names the plugin and the checks::

    pytest -p corrmom_conformance.plugin --pyargs corrmom_conformance.checks --corrmom-impl=chainer

(``nox -s conformance`` does this). Its options are namespaced (``--corrmom-*``),
so a project's own ``--impl`` or ``--backend`` never clashes with them, and
Hypothesis (the ``[test]`` extra) is imported only when the checks are.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from corrmom_conformance import deviations as deviations_module
from corrmom_conformance.report import Report

CHECKS_DIR = Path(__file__).parent / "checks"
NA_PREFIX = "not applicable: "

_STATE: dict[str, Any] = {}


#: The suite's options; each is ``--corrmom-NAME`` (``nox -s conformance`` also takes ``--NAME``).
OPTIONS = ("impl", "backend", "thorough", "report", "no-shrink")


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
        help="array backend for --corrmom-impl=ref: numpy, numpy1, numba, array_api_strict, torch, jax, dask, cupy (default numpy)",
    )
    group.addoption(
        "--corrmom-thorough", action="store_true", help="many more generated cases per check (slow)"
    )
    group.addoption("--corrmom-report", default=None, help="write the report to PATH.json and PATH.md")
    group.addoption(
        "--corrmom-no-shrink",
        action="store_true",
        help="report the first counterexample found without shrinking it (quick pass/fail runs)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): the check needs these adapter capabilities")
    if importlib.util.find_spec("hypothesis") is None:
        raise pytest.UsageError(
            "the corrmom conformance suite needs Hypothesis: pip install 'corrmom-ref[test]' "
            "(or run without -p corrmom_conformance.plugin)"
        )
    profile = "conformance-thorough" if config.getoption("corrmom_thorough") else "conformance-fast"
    if config.getoption("corrmom_no_shrink"):
        profile += "-no-shrink"
    _STATE["profile"] = profile


def load_profile() -> None:
    """Register the suite's Hypothesis profiles and make the run's one current.

    Called when :mod:`corrmom_conformance.checks` is imported: ``@given`` binds its
    settings when a check module is imported, so the profile must be loaded
    before that, and only for conformance runs (Hypothesis is imported here,
    not when pytest starts).
    """
    from hypothesis import HealthCheck, Phase, settings

    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "print_blob": True}
    for name, examples in (("conformance-fast", 12), ("conformance-thorough", 200)):
        settings.register_profile(name, max_examples=examples, **common)
        settings.register_profile(
            name + "-no-shrink", settings.get_profile(name), phases=[Phase.explicit, Phase.generate]
        )
    settings.load_profile(_STATE.get("profile", "conformance-fast"))


def _adapter(config: pytest.Config) -> Any:
    if "adapter" not in _STATE:
        from corrmom_conformance.adapters import resolve

        try:
            _STATE["adapter"] = resolve(config.getoption("corrmom_impl"), config.getoption("corrmom_backend"))
        except (ImportError, RuntimeError, ValueError, TypeError) as error:
            raise pytest.UsageError(f"cannot set up the implementation under test: {error}") from error
    return _STATE["adapter"]


def _is_check(item: pytest.Item) -> bool:
    return CHECKS_DIR in Path(str(item.fspath)).parents


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    adapter = _adapter(config)
    _STATE["check_ids"] = {item.nodeid for item in checks}
    declared = deviations_module.load(adapter.name, getattr(adapter, "expected_deviations", None))
    by_key = {d.check: d for d in declared}
    used: set[str] = set()
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
            item.add_marker(pytest.mark.xfail(reason=by_key[key].reason, strict=False))
            _without_shrinking(item)
    stale = sorted(set(by_key) - used)
    for key in stale:
        warnings.warn(
            f"expected deviation {key!r} of {adapter.name} matches no collected check", stacklevel=1
        )
    _STATE["report"] = Report(
        adapter.name, adapter.version, adapter.backend, sorted(adapter.capabilities), stale_deviations=stale
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
    profile = _STATE.get("profile", "conformance-fast")
    seed = config.getoption("hypothesis_seed", default=None)
    return [
        f"corrmom conformance: impl={adapter.name} {adapter.version} backend={adapter.backend}",
        f"  capabilities: {', '.join(sorted(adapter.capabilities))}",
        f"  hypothesis profile: {profile}, seed: {seed if seed is not None else 'random (see --hypothesis-seed)'}",
    ]


def current_adapter() -> Any:
    """The implementation under test, for code that cannot take fixtures (state machines)."""
    if "adapter" not in _STATE:
        raise RuntimeError("no conformance run is in progress")
    return _STATE["adapter"]


@pytest.fixture(scope="session")
def adapter(pytestconfig: pytest.Config) -> Any:
    """The implementation under test (see :mod:`corrmom_conformance.protocol`)."""
    return _adapter(pytestconfig)


def _without_shrinking(item: pytest.Item) -> None:
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
    done = _STATE.setdefault("unshrunk", set())  # parametrised items share one test function
    if getattr(test, "is_hypothesis_test", False) and id(test) not in done:
        done.add(id(test))
        settings(settings.default, phases=phases)(test)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    rep = _STATE.get("report")
    if rep is None or report.nodeid not in _STATE["check_ids"]:
        return
    check = report.nodeid.split("checks/", 1)[-1]
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome = "deviation now passes" if report.passed else "expected deviation"
            rep.record(check, outcome, report.wasxfail)
        elif report.passed:
            rep.record(check, "pass")
        else:
            rep.record(check, "fail", _first_line(report.longreprtext))
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
        rep.record(check, "error", _first_line(report.longreprtext))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("E "):
            return line[2:].strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rep: Report | None = _STATE.get("report")
    if rep is None:
        return
    terminalreporter.section("corrmom conformance")
    terminalreporter.write_line(f"{rep.impl} {rep.version} on {rep.backend}: {rep.summary_line()}")
    for entry in rep.entries.values():
        if entry.outcome == "deviation now passes":
            terminalreporter.write_line(f"  deviation now passes (update the deviations file): {entry.check}")
    for key in rep.stale_deviations:
        terminalreporter.write_line(f"  stale expected deviation: {key}")
    path = config.getoption("corrmom_report")
    if path:
        json_path, md_path = rep.write(path)
        terminalreporter.write_line(f"report: {json_path} and {md_path}")
