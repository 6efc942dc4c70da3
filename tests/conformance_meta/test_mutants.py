"""The conformance suite must reject wrong implementations, each in the family meant to catch it.

Every (mutant, family) pair runs that family's checks on the mutant in a
fresh pytest process, with a fixed Hypothesis seed, and asserts that at least
one check fails. The reference itself must pass the same runs (tested by the
``conformance`` nox session and :func:`test_reference_passes_every_family`).
The mutants come from :mod:`tests.conformance_meta.mutants` and, for the
blind spots of issue 13, :mod:`tests.conformance_meta.blind_spot_mutants`,
and for the gaps of issue 23, :mod:`tests.conformance_meta.gap_mutants`;
the kill rate per family and the run times are printed at the end of the run
(see ``conftest.py`` here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conformance_meta import blind_spot_mutants, gap_mutants, mutants
from tests.conformance_meta.kill_rates import RESULTS, Result

#: (impl, family): every mutant with the family that must reject it.
KILLS = (
    [(f"tests.conformance_meta.mutants:{m}", f) for m, f in mutants.KILLS]
    + [(f"tests.conformance_meta.blind_spot_mutants:{m}", f) for m, f in blind_spot_mutants.KILLS]
    + [(f"tests.conformance_meta.gap_mutants:{m}", f) for m, f in gap_mutants.KILLS]
    + gap_mutants.SECOND_ANGLES  # one check alone: "family::check"
)

#: mutant name -> the package it needs besides the reference's.
REQUIRES = {**blind_spot_mutants.REQUIRES, **gap_mutants.REQUIRES}

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = [
    "test_equations",
    "test_exactness",
    "test_fast_paths",
    "test_hooks",
    "test_loss_scaling",
    "test_machinery",
    "test_nan_skipping",
    "test_serialization",
    "test_state_machine",
]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the suite's meta-tests run once, in the NumPy leg",
)


def _check_path(family: str) -> str:
    """``test_x`` runs a family's file; ``test_x::test_y`` that one check alone."""
    name, _, check = family.partition("::")
    path = str(ROOT / "src" / "corrmom_conformance" / "checks" / f"{name}.py")
    return f"{path}::{check}" if check else path


def _run(impl: str, families: list[str], tmp_path: Path, *extra: str) -> dict:
    report = tmp_path / "report"
    path = [str(ROOT / "src"), str(ROOT)]  # the checkout (installed or not) and the mutants under tests/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        *(_check_path(f) for f in families),
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


@pytest.mark.parametrize(("mutant", "family"), KILLS, ids=[f"{m.split(':')[1]}-{f}" for m, f in KILLS])
def test_family_rejects_mutant(mutant, family, tmp_path):
    needs = REQUIRES.get(mutant.split(":")[1])
    if needs is not None:
        pytest.importorskip(needs)
    start = time.perf_counter()
    result = _run(mutant, [family], tmp_path, "-x", "--corrmom-no-shrink")
    killed = result["counts"]["fail"] >= 1
    RESULTS.append(Result(mutant.split(":")[1], family.split("::")[0], killed, time.perf_counter() - start))
    assert killed, f"{family} passed mutant {mutant}: {result['counts']}"


def test_reference_passes_every_family(tmp_path):
    result = _run("ref", FAMILIES, tmp_path)
    assert result["counts"]["fail"] == 0 and result["counts"]["error"] == 0, result["entries"]


def test_every_family_kills_at_least_two_mutants():
    per_family = Counter(family.split("::")[0] for _, family in KILLS)
    assert {f: per_family[f] for f in FAMILIES} == {f: max(2, per_family[f]) for f in FAMILIES}


def test_at_least_forty_mutants():
    assert len({m for m, _ in KILLS}) >= 40


#: The backend leg (``CORRMOM_BACKENDS``) that installs each package a mutant may need.
LEG_OF_PACKAGE = {"torch": "torch", "optax": "jax"}


def test_every_required_package_has_a_leg():
    """Each mutant in REQUIRES is one the runs above use, and its package belongs to a backend leg."""
    names = {m.split(":")[1] for m, _ in KILLS}
    assert set(REQUIRES) <= names, sorted(set(REQUIRES) - names)
    assert set(REQUIRES.values()) <= set(LEG_OF_PACKAGE), sorted(set(REQUIRES.values()) - set(LEG_OF_PACKAGE))


def test_no_mutant_is_skipped_where_its_leg_runs():
    """Where CORRMOM_BACKENDS names a mutant's backend (the README's ``nox -s tests`` names numpy, torch
    and jax in one virtualenv), its package is importable, so the mutant runs there instead of skipping."""
    legs = set(os.environ.get("CORRMOM_BACKENDS", "numpy").split(","))
    skipped = [
        f"{mutant} (needs {package})"
        for mutant, package in REQUIRES.items()
        if LEG_OF_PACKAGE[package] in legs and importlib.util.find_spec(package) is None
    ]
    assert not skipped, f"mutants that would skip in the {','.join(sorted(legs))} leg: {skipped}"
