"""The fuzz can fail: bugs planted into a copy of the reference are found, with a reproducer.

Each case copies ``src/corrmom_ref`` into a temporary folder, changes one
line there, and runs the fuzz on the copy in a subprocess (the copy must be
imported as ``corrmom_ref``), expecting exit status 1 and a reproducer
script that, run, shows the divergence. The first case also checks that
the reproducer is shrunk (the others skip shrinking, which costs time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "chainer",
    reason="real Chainer 7.8.1 is not importable here (`nox -s differential` and `nox -s fixtures` install it)",
)

ROOT = Path(__file__).resolve().parents[2]

#: (name, file under corrmom_ref, original text, planted text); the first is also shrunk
PLANTED = [
    (
        "eq. 10 instead of eq. 9",
        "_step/reference.py",
        "    v *= m\n    v -= g\n    p += lr * v\n    return p, v",
        "    v *= m\n    v -= lr * g\n    p += v\n    return p, v",
    ),
    (
        "doubling interval off by one",
        "loss_scaling.py",
        "math.pow(2.0, 1.0 / interval)",
        "math.pow(2.0, 1.0 / (interval + 1))",
    ),
    (
        "t not advanced on a skipped step",
        "optimizer.py",
        "        self.t += 1\n        if self.is_safe_to_update():",
        "        if self.is_safe_to_update():\n            self.t += 1",
    ),
]


@pytest.mark.parametrize(("name", "module", "original", "planted"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_is_found(tmp_path: Path, name: str, module: str, original: str, planted: str) -> None:
    shrink = name == PLANTED[0][0]
    copy = tmp_path / "corrmom_ref"
    shutil.copytree(ROOT / "src" / "corrmom_ref", copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = (copy / module).read_text()
    assert source.count(original) == 1, f"the line to plant {name!r} into has changed"
    (copy / module).write_text(source.replace(original, planted))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "tests")])}
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "differential.fuzz", "--scenarios", "3000", "--seed", "1"),
            *(() if shrink else ("--no-shrink",)),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert str(tmp_path) in done.stdout, done.stdout + done.stderr  # the copy was the one tested
    assert done.returncode == 1, done.stdout + done.stderr
    marker = "---- minimal reproducer (shrunk) ----" if shrink else "---- reproducer (not shrunk) ----"
    assert marker in done.stdout, done.stdout
    script = done.stdout.split(marker, 1)[1]
    if shrink:  # Hypothesis shrank it to a handful of operations
        assert script.count("\n        (") <= 6, script
    (tmp_path / "repro.py").write_text(script)
    replay = subprocess.run(
        [sys.executable, str(tmp_path / "repro.py")], capture_output=True, text=True, env=env, timeout=300
    )
    assert "divergence=None" not in replay.stdout and "divergence=" in replay.stdout, (
        replay.stdout + replay.stderr
    )
