"""The nox sessions answer bad arguments with one line naming what is valid, before installing anything."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the noxfile's tests run once, in the NumPy leg",
)


def _nox(*args: str) -> tuple[int, list[str]]:
    pytest.importorskip("nox")
    done = subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


def _noxfile():
    pytest.importorskip("nox")
    return _load_noxfile()


@functools.cache  # nox registers the sessions when the file is executed: once
def _load_noxfile():
    import importlib.util

    spec = importlib.util.spec_from_file_location("corrmom_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _the_error(lines: list[str]) -> str:
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    (line,) = [line for line in lines if "aborted" in line]
    return line


def test_unknown_backend_lists_the_backends():
    code, lines = _nox("-s", "conformance", "--", "--backend=nonsense")
    line = _the_error(lines)
    assert code != 0
    assert "--backend='nonsense'" in line
    for backend in _noxfile().BACKEND_REQUIREMENTS:
        assert backend in line
    assert not any("pip install" in line or "venv" in line for line in lines), lines
    assert not any("uv binary not found" in line for line in lines), "nox's uv notice is shown"


def test_unknown_impl_lists_the_implementations():
    code, lines = _nox("-s", "conformance", "--", "--impl", "chainr")
    line = _the_error(lines)
    assert code != 0
    noxfile = _noxfile()
    for impl in ["ref", "chainer", *noxfile.IMPL_REQUIREMENTS]:
        assert impl in line
    assert "'chainr'" in line and "package.module:factory" in line


def test_every_matrix_row_passes_the_check():
    noxfile = _noxfile()

    class Session:
        def error(self, message: str) -> None:
            raise AssertionError(message)

    for impl, backend in noxfile.MATRIX:
        noxfile._check_suite_args(Session(), impl, backend)


def test_short_options_reach_pytest_namespaced():
    noxfile = _noxfile()
    args = ["--impl=chainer", "--backend", "torch", "--thorough", "-k", "hooks", "--report=r", "--no-shrink"]
    assert noxfile._pytest_args(args) == [
        "--corrmom-impl=chainer",
        "--corrmom-backend",
        "torch",
        "--corrmom-thorough",
        "-k",
        "hooks",
        "--corrmom-report=r",
        "--corrmom-no-shrink",
    ]


def test_the_short_options_are_the_plugins():
    """What ``nox -s conformance`` passes on as ``--corrmom-NAME`` is every option of the plugin, flags as flags."""
    from corrmom_conformance import plugin

    takes_value: dict[str, bool] = {}

    class Group:
        def addoption(self, name: str, **kwargs: object) -> None:
            takes_value[name] = kwargs.get("action") != "store_true"

    class Parser:
        def getgroup(self, name: str) -> Group:
            return Group()

    plugin.pytest_addoption(Parser())
    assert {f"--corrmom-{name}": value for name, value in _noxfile().SUITE_OPTIONS.items()} == takes_value


def test_sessions_without_arguments_refuse_them():
    code, lines = _nox("-s", "conformance-matrix", "--", "--impl=torch")
    line = _the_error(lines)
    assert code != 0 and "takes no arguments" in line and "--impl=torch" in line


def test_no_test_leg_for_a_backend_that_cannot_run_here():
    code, lines = _nox("-l")
    assert code == 0, lines
    listed = " ".join(lines)
    noxfile = _noxfile()
    for backend in noxfile.BACKEND_REQUIREMENTS:
        leg = f"tests-backend(backend='{backend}')"
        runs_here = not noxfile._needs_missing_gpu(backend)
        assert (leg in listed) == runs_here, f"{leg}: listed {leg in listed}, runs here {runs_here}"
    assert not shutil.which("nvidia-smi") or "tests-backend(backend='cupy')" in listed


def test_readme_test_command_runs_the_quick_backends_in_one_venv():
    noxfile = _noxfile()
    assert set(noxfile.QUICK_BACKENDS) <= set(noxfile.BACKEND_REQUIREMENTS)
    assert not any(noxfile.BACKEND_REGISTRY.REGISTRY[b].needs_gpu for b in noxfile.QUICK_BACKENDS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m nox -s tests " in readme and 'nox.options.sessions = ["tests"]' in (
        ROOT / "noxfile.py"
    ).read_text(encoding="utf-8")
