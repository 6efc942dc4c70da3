"""``--impl=chainer`` starts without Chainer's import-time DeprecationWarnings on the terminal.

Chainer 7.8.1's import warns about ``numpy.distutils`` and distutils'
``msvccompiler``; the adapter imports it with those silenced. Checked in a
fresh interpreter that turns every DeprecationWarning into an error: against
a stand-in ``chainer`` package that warns the same way on import (always),
and against real Chainer where it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """import warnings
warnings.warn("numpy.distutils is deprecated", DeprecationWarning, stacklevel=1)
from . import _environment_check
__version__ = "7.8.1"
"""
STAND_IN_CHECK = """import warnings
warnings.warn("msvccompiler is deprecated", DeprecationWarning, stacklevel=2)
"""


def _construct(*path: Path) -> subprocess.CompletedProcess[str]:
    code = "from corrmom_conformance.adapters.chainer import make_adapter; print(make_adapter().version)"
    paths = [*map(str, path), str(ROOT / "src")]
    return subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stand_in_chainer_warnings_are_silenced(tmp_path):
    package = tmp_path / "chainer"
    package.mkdir()
    (package / "__init__.py").write_text(STAND_IN)
    (package / "_environment_check.py").write_text(STAND_IN_CHECK)
    done = _construct(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7.8.1" and "Warning" not in done.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("chainer") is None,
    reason="real Chainer 7.8.1 is not importable here (`nox -s differential` and `nox -s fixtures` install it)",
)
def test_real_chainer_warnings_are_silenced():
    done = _construct()
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
