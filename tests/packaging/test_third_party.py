"""A third party's route, as docs/conformance.md documents it, from its own project's directory.

A throwaway project ``mysgd`` (an eq. (9) optimizer and its adapter, a
pyproject.toml, nothing of this checkout) is created in ``tmp_path``; in a
fresh virtualenv, from that project's directory, the documented commands run
as written: ``python -m pip install "../corrmom-ref[test]" -e .`` (a copy of
this checkout beside the project, named as the docs name it), then ``python -m pytest -p
corrmom_conformance.plugin --pyargs corrmom_conformance.checks
--corrmom-impl=mysgd.conformance_adapter:make_adapter --corrmom-report=...``.
Skipped only when pip cannot reach a package index (it needs Hypothesis,
pytest and setuptools from one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.packaging.test_installed_wheel import (  # noqa: F401  (pytestmark: the same NumPy-leg skip)
    _ok,
    _run,
    copy_checkout,
    pytestmark,
)

OPTIMIZER = '''"""mysgd: momentum SGD in Goyal et al.'s eq. (9), u = m u + g, w = w - lr u."""

import numpy as np


class MySGD:
    def __init__(self, params, lr, momentum):
        self.params = {k: np.array(v, copy=True) for k, v in params.items()}
        self.u = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.lr, self.momentum = lr, momentum

    def step(self, grads):
        for k, g in grads.items():
            self.u[k] = self.momentum * self.u[k] + g
            self.params[k] = self.params[k] - self.lr * self.u[k]
'''

ADAPTER = '''"""The conformance suite's adapter for mysgd (corrmom_conformance.protocol)."""

import numpy as np

from mysgd import MySGD


class Optimizer:
    def __init__(self, params, lr, momentum):
        self.impl = MySGD(params, lr, momentum)

    def step(self, grads):
        self.impl.step({k: np.asarray(g, self.impl.params[k].dtype) for k, g in grads.items()})

    def params(self):
        return {k: v.copy() for k, v in self.impl.params.items()}

    def state(self):
        return {k: v.copy() for k, v in self.impl.u.items()}

    def set_lr(self, lr):
        self.impl.lr = lr

    def set_momentum(self, momentum):
        self.impl.momentum = momentum


class Adapter:
    name = "mysgd"
    version = "0.1"
    backend = "numpy"
    capabilities = frozenset({"hyperparams", "state", "float64"})
    state_sign = 1.0

    def create(self, params, *, lr, momentum):
        return Optimizer(params, lr, momentum)


def make_adapter():
    return Adapter()
'''

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mysgd"
version = "0.1"
dependencies = ["numpy"]

[tool.setuptools]
packages = ["mysgd"]
"""

#: The documented report name, dots and colon included (what ``nox -s conformance`` would name it).
REPORT = "reports/conformance-mysgd.conformance_adapter:make_adapter-native"
UNREACHABLE = ("Could not find a version that satisfies", "No matching distribution", "NewConnectionError")


def test_documented_route_from_the_projects_own_directory(tmp_path):
    copy_checkout(tmp_path / "corrmom-ref")  # the checkout, beside the project as the docs place it
    project = tmp_path / "mysgd-project"
    for name, text in {
        "pyproject.toml": PYPROJECT,
        "mysgd/__init__.py": OPTIMIZER,
        "mysgd/conformance_adapter.py": ADAPTER,
    }.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    _ok(_run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path))
    python = tmp_path / "venv" / "bin" / "python"
    # docs/conformance.md, "A third party": install the suite and your project ...
    done = _run(python, "-m", "pip", "install", "-q", "../corrmom-ref[test]", "-e", ".", cwd=project)
    if done.returncode != 0 and any(marker in done.stdout + done.stderr for marker in UNREACHABLE):
        pytest.skip(f"pip cannot reach a package index: {(done.stdout + done.stderr).strip()[-300:]}")
    _ok(done)
    # ... and run it, from your project's directory
    command = [
        python,
        "-m",
        "pytest",
        "-p",
        "corrmom_conformance.plugin",
        "--pyargs",
        "corrmom_conformance.checks",
        "--corrmom-impl=mysgd.conformance_adapter:make_adapter",
        f"--corrmom-report={REPORT}",
    ]
    output = _ok(_run(*command, cwd=project))
    assert "INTERNALERROR" not in output and "PLEASE REPORT THIS" not in output
    assert "corrmom conformance: impl=mysgd 0.1 backend=numpy" in output, output[-3000:]
    written = sorted(p.name for p in (project / "reports").iterdir())
    assert written == [Path(REPORT).name + ".json", Path(REPORT).name + ".md"], written
    report = json.loads((project / (REPORT + ".json")).read_text(encoding="utf-8"))
    assert report["impl"] == "mysgd" and report["counts"]["pass"] >= 10, report["counts"]
    assert report["counts"]["fail"] == 0 and report["counts"]["error"] == 0, report["counts"]
