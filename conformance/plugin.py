"""The pytest plugin of the conformance suite (entry point ``corrmom_conformance``).

Inert unless ``--impl`` is given or checks from this package are collected.
Options: ``--impl`` (a registered name or ``module:factory``), ``--backend``,
``--thorough`` (the long hypothesis profile; the default one is fast),
``--report DIR`` (JSON and Markdown report). Hypothesis' own
``--hypothesis-seed`` reproduces a run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from conformance.adapters import resolve
from conformance.backends import BACKENDS
from conformance.deviations import Deviation, load_deviations
from conformance.report import classify, write_report

_ADAPTER = pytest.StashKey[Any]()
_STATE = pytest.StashKey[dict[str, Any]]()
_PACKAGE_DIR = Path(__file__).parent

FAST = "corrmom-conformance-fast"
THOROUGH = "corrmom-conformance-thorough"
#: For the suite's own mutant tests: no shrinking, stop at the first failing example.
KILL = "corrmom-conformance-kill"


def _register_profiles() -> None:
    """Registered at import, so ``--hypothesis-profile`` can name them."""
    try:
        from hypothesis import HealthCheck, Phase, settings
    except ImportError:  # the suite needs hypothesis; other pytest runs must not break without it
        return

    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile(FAST, max_examples=12, deadline=None, suppress_health_check=quiet)
    settings.register_profile(THOROUGH, max_examples=300, deadline=None, suppress_health_check=quiet)
    settings.register_profile(KILL, max_examples=12, deadline=None, suppress_health_check=quiet,
                              phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None,
                              print_blob=False)


_register_profiles()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("corrmom-conformance", "corrmom-ref conformance suite")
    group.addoption("--impl", default=None,
                    help="implementation under test: ref (default), chainer, torch, optax or module:factory")
    group.addoption("--backend", default="numpy", choices=BACKENDS,
                    help="array backend for --impl=ref (default numpy)")
    group.addoption("--thorough", action="store_true", help="many more hypothesis examples per check")
    group.addoption("--report", default=None, metavar="DIR",
                    help="write <impl>-<backend>.json and .md with every check's outcome to DIR")


def _is_conformance_item(item: pytest.Item) -> bool:
    return _PACKAGE_DIR in Path(str(item.path)).parents


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE] = {"results": {}, "deviations": [], "active": False}
    if config.getoption("impl") is not None or any("conformance" in str(a) for a in config.args):
        _activate(config)


def _activate(config: pytest.Config) -> None:
    from hypothesis import settings

    state = config.stash[_STATE]
    if state["active"]:
        return
    state["active"] = True
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile(THOROUGH if config.getoption("thorough") else FAST)


def adapter_of(config: pytest.Config) -> Any:
    """The adapter for this run (resolved once)."""
    if _ADAPTER not in config.stash:
        config.stash[_ADAPTER] = resolve(config.getoption("impl"), config.getoption("backend"))
    return config.stash[_ADAPTER]


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Any:
    """The adapter of the implementation under test (:class:`conformance.protocol.Adapter`)."""
    return adapter_of(request.config)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.stash[_STATE]["active"]:
        return None
    from hypothesis import settings

    adapter = adapter_of(config)
    seed = config.getoption("hypothesis_seed", None)
    return [f"corrmom conformance: impl={adapter.name} {adapter.version} backend={adapter.backend} "
            f"device=cpu hypothesis profile={settings._current_profile} "
            f"seed={'random' if seed is None else seed}",
            f"capabilities: {', '.join(sorted(adapter.capabilities))}"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if _is_conformance_item(item)]
    if not ours:
        return
    _activate(config)
    adapter = adapter_of(config)
    deviations = load_deviations(adapter.name)
    used: set[Deviation] = set()
    for item in ours:
        for deviation in deviations:
            if deviation.matches(item.nodeid):
                used.add(deviation)
                item.add_marker(pytest.mark.xfail(reason=f"expected deviation: {deviation.reason}",
                                                  strict=False))
                break
    stale = [d for d in deviations if d not in used]
    config.stash[_STATE]["stale"] = stale
    for deviation in stale:
        warnings.warn(f"expected deviation of {adapter.name} matches no collected check: {deviation.check}",
                      stacklevel=1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if _is_conformance_item(item):
        decided = classify(report)
        if decided is not None:
            item.config.stash[_STATE]["results"][_check_id(item.nodeid)] = decided
    return report


def _check_id(nodeid: str) -> str:
    return nodeid.split("conformance/")[-1]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash[_STATE]
    if not state["results"]:
        return
    passing = sorted(k for k, (o, _) in state["results"].items() if o == "deviation now passes")
    if passing:
        terminalreporter.write_sep("=", "expected deviations that now pass (update the deviation file)")
        for check in passing:
            terminalreporter.write_line(check)
    for deviation in state.get("stale", []):
        terminalreporter.write_line(f"stale expected deviation (matches nothing): {deviation.check}")
    directory = config.getoption("report")
    if directory:
        adapter = adapter_of(config)
        from hypothesis import settings

        header = {"impl": adapter.name, "version": adapter.version, "backend": adapter.backend,
                  "capabilities": sorted(adapter.capabilities), "profile": settings._current_profile,
                  "seed": config.getoption("hypothesis_seed", None)}
        path = write_report(Path(directory), header, state["results"])
        terminalreporter.write_line(f"conformance report: {path} (and .md)")
