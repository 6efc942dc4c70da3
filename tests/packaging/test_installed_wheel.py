"""The installed wheel disturbs no other project's pytest, and runs the suite when asked.

Builds the wheel from this checkout, installs it with pytest and NumPy (not
Hypothesis, which only the ``[test]`` extra brings) into a throwaway
virtualenv, and runs pytest there in throwaway projects, with nothing of the
checkout on the path:

1. a plain project runs (no INTERNALERROR for the missing Hypothesis);
2. a project whose conftest adds its own ``--backend``, ``--impl`` and
   ``--report`` runs with them;
3. a project with its own top-level ``conformance`` package imports its own;
4. ``pytest --help`` does not list the suite's options, and a run that does
   not ask for the suite does not import Hypothesis even where it is installed;

and the suite itself, asked for with ``-p corrmom_conformance.plugin``, says
in one line that it needs Hypothesis, then passes on the reference once
Hypothesis is on the path. Needs pip to reach PyPI or its cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the packaging tests run once, in the NumPy leg",
)

#: What the wheel is built from (the rest of the checkout must not matter).
SOURCES = ["src", "pyproject.toml", "README.md", "LICENSE"]


def copy_checkout(dest: Path) -> Path:
    """``dest`` holding what the package is built from (:data:`SOURCES`), nothing else of the checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV"))}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(*command: str | Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, env=_env(**extra), capture_output=True, text=True, timeout=600
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{output[-4000:]}"
    return output


class Installed:
    """The throwaway virtualenv with the wheel, and a folder holding Hypothesis for the suite's run."""

    def __init__(self, base: Path) -> None:
        source = copy_checkout(base / "source")
        wheels = base / "wheels"
        _ok(_run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source, cwd=base))
        (self.wheel,) = wheels.glob("*.whl")
        _ok(_run(sys.executable, "-m", "venv", base / "venv", cwd=base))
        self.python = base / "venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
        _ok(_run(self.python, "-m", "pip", "install", "-q", self.wheel, "pytest", "numpy", cwd=base))
        self.hypothesis = base / "hypothesis"
        self.base = base

    def pytest(self, project: Path, *args: str, hypothesis: bool = False) -> subprocess.CompletedProcess[str]:
        extra = {"PYTHONPATH": str(self.hypothesis)} if hypothesis else {}
        return _run(self.python, "-m", "pytest", "-p", "no:cacheprovider", *args, cwd=project, **extra)

    def add_hypothesis(self) -> None:
        if not self.hypothesis.exists():
            _ok(
                _run(
                    self.python,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--target",
                    self.hypothesis,
                    "hypothesis",
                    cwd=self.base,
                )
            )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_wheel_installs_no_generic_top_level_name(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"corrmom_ref", "corrmom_conformance"}
    with zipfile.ZipFile(installed.wheel) as wheel:
        entry_points = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
        assert all("pytest11" not in wheel.read(n).decode() for n in entry_points)
    done = _run(installed.python, "-c", "import hypothesis", cwd=installed.base)
    assert done.returncode != 0, "Hypothesis is installed: the tests below would not test its absence"


def test_plain_project_runs_without_hypothesis(installed, tmp_path):
    project = _project(tmp_path, {"test_plain.py": "def test_one():\n    assert 1 + 1 == 2\n"})
    output = _ok(installed.pytest(project, "-q"))
    assert "1 passed" in output and "INTERNALERROR" not in output


def test_project_with_its_own_backend_impl_report_options(installed, tmp_path):
    conftest = (
        "def pytest_addoption(parser):\n"
        "    for name in ('--backend', '--impl', '--report'):\n"
        "        parser.addoption(name, default='unset')\n"
    )
    test = (
        "def test_options(pytestconfig):\n"
        "    assert pytestconfig.getoption('--backend') == 'mine'\n"
        "    assert pytestconfig.getoption('--impl') == 'also-mine'\n"
        "    assert pytestconfig.getoption('--report') == 'unset'\n"
    )
    project = _project(tmp_path, {"conftest.py": conftest, "test_options.py": test})
    output = _ok(installed.pytest(project, "-q", "--backend=mine", "--impl=also-mine"))
    assert "1 passed" in output


def test_project_with_its_own_conformance_package(installed, tmp_path):
    files = {
        "conformance/__init__.py": "OWNER = 'the project'\n",
        "tests/test_own.py": "import conformance\n\n\ndef test_own():\n    assert conformance.OWNER == 'the project'\n",
    }
    project = _project(tmp_path, files)
    output = _ok(installed.pytest(project, "-q", "--import-mode=importlib", "--rootdir", str(project)))
    assert "1 passed" in output
    # and outside the project the name does not exist at all
    done = _run(installed.python, "-c", "import conformance", cwd=installed.base)
    assert "No module named 'conformance'" in done.stderr


def test_help_and_imports_untouched_unless_asked(installed, tmp_path):
    installed.add_hypothesis()
    test = "import sys\n\n\ndef test_nothing_imported():\n    assert 'hypothesis' not in sys.modules\n"
    project = _project(tmp_path, {"test_imports.py": test})
    help_text = _ok(installed.pytest(project, "--help", hypothesis=True))
    assert "--hypothesis-seed" in help_text, "Hypothesis's own plugin is not on the path: nothing was tested"
    assert "corrmom" not in help_text
    _ok(installed.pytest(project, "-q", hypothesis=True))


def test_suite_without_hypothesis_says_so_in_one_line(installed, tmp_path):
    done = installed.pytest(
        tmp_path, "-p", "corrmom_conformance.plugin", "--pyargs", "corrmom_conformance.checks"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4, output[-3000:]  # pytest's usage error
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert "needs Hypothesis: pip install hypothesis " in output


def test_suite_runs_when_asked(installed, tmp_path):
    installed.add_hypothesis()
    report = tmp_path / "report"
    args = ["-p", "corrmom_conformance.plugin", "--pyargs", "corrmom_conformance.checks", "-q"]
    output = _ok(
        installed.pytest(tmp_path, *args, "--corrmom-impl=ref", f"--corrmom-report={report}", hypothesis=True)
    )
    assert "corrmom conformance" in output and " pass" in output
    text = report.with_suffix(".md").read_text(encoding="utf-8")
    assert "ref" in text
    # the checks ran from the installed wheel, not from a checkout
    where = _ok(
        _run(installed.python, "-c", "import corrmom_conformance as c; print(c.__file__)", cwd=tmp_path)
    )
    assert "site-packages" in where


def test_wheel_carries_license_readme_and_typing_marker(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        licenses = [n for n in names if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
        assert licenses, f"no LICENSE in the wheel: {names}"
        assert "MIT License" in wheel.read(licenses[0]).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert "# corrmom-ref" in wheel.read(metadata).decode(), "the README is not the long description"
        assert "corrmom_ref/py.typed" in names


def test_sdist_carries_license_readme_and_typing_marker(installed, tmp_path):
    out = tmp_path / "sdist"
    _ok(
        _run(
            sys.executable, "-m", "build", "--sdist", "--outdir", out, installed.base / "source", cwd=tmp_path
        )
    )
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {"LICENSE", "README.md", "src/corrmom_ref/py.typed"} - names
    assert not missing, f"the sdist lacks {sorted(missing)}"
