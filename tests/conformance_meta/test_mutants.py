"""The conformance suite must reject wrong implementations, each in the family meant to catch it.

Every (mutant, family) pair runs that family's checks on the mutant in a
fresh pytest process, with a fixed Hypothesis seed, and asserts that at least
one check fails. The reference itself must pass the same runs (tested by the
``conformance`` nox session and :func:`test_reference_passes_every_family`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conformance_meta.mutants import KILLS

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = [
    "test_equations",
    "test_fast_paths",
    "test_hooks",
    "test_loss_scaling",
    "test_nan_skipping",
    "test_serialization",
    "test_state_machine",
]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the suite's meta-tests run once, in the NumPy leg",
)


def _run(impl: str, families: list[str], tmp_path: Path, *extra: str) -> dict:
    report = tmp_path / "report"
    path = [str(ROOT / "src"), str(ROOT), str(ROOT / "tools" / "checkout")]  # the checkout, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        *(str(ROOT / "conformance" / "checks" / f"{f}.py") for f in families),
        "-p",
        "corrmom_conformance.plugin",
        f"--corrmom-impl={impl}",
        "--hypothesis-seed=0",
        f"--corrmom-report={report}",
        "-q",
        "-p",
        "no:cacheprovider",
        *extra,
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert report.with_suffix(".json").exists(), (
        f"no report; pytest said:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return json.loads(report.with_suffix(".json").read_text())


@pytest.mark.parametrize(("mutant", "family"), KILLS, ids=[f"{m}-{f}" for m, f in KILLS])
def test_family_rejects_mutant(mutant, family, tmp_path):
    result = _run(f"tests.conformance_meta.mutants:{mutant}", [family], tmp_path, "-x", "--corrmom-no-shrink")
    assert result["counts"]["fail"] >= 1, f"{family} passed mutant {mutant}: {result['counts']}"


def test_reference_passes_every_family(tmp_path):
    result = _run("ref", FAMILIES, tmp_path)
    assert result["counts"]["fail"] == 0 and result["counts"]["error"] == 0, result["entries"]


def test_every_family_kills_at_least_two_mutants():
    per_family = Counter(family for _, family in KILLS)
    assert {f: per_family[f] for f in FAMILIES} == {f: max(2, per_family[f]) for f in FAMILIES}
