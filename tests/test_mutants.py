"""The suite catches bugs: each mutant in ``tests/mutants.py`` fails its intended family, ref passes."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "conformance"

#: mutant factory -> the family module that must fail.
KILLS = {
    "eq10_uncorrected": "test_equations",
    "momentum_after_step": "test_equations",
    "wrong_sign": "test_equations",
    "cleared_grad_skipped": "test_equations",
    "hooks_reversed": "test_hooks",
    "per_param_hook_once": "test_hooks",
    "doubling_interval_plus_one": "test_loss_scaling",
    "no_clamp": "test_loss_scaling",
    "nan_not_skipped": "test_nan_skipping",
    "t_not_advanced_on_skip": "test_nan_skipping",
    "state_not_restored": "test_serialization",
    "t_not_restored": "test_serialization",
    "wrong_sign ": "test_serialization",
    "eq10_uncorrected ": "test_api_sequences",
    "nan_not_skipped ": "test_api_sequences",
}


def run_suite(impl: str, family: str, tmp_path: Path) -> dict[str, dict[str, str]]:
    """Run one family in-process with a fixed seed; returns the report's results."""
    args = [str(SUITE / f"{family}.py"), f"--impl={impl}", f"--report={tmp_path}", "-q",
            "-p", "no:cacheprovider", "--hypothesis-seed=0", "--hypothesis-profile=corrmom-conformance-kill", "-x", "-W", "ignore::DeprecationWarning"]
    if not entry_points(group="pytest11", name="corrmom_conformance"):
        args += ["-p", "conformance.plugin"]
    pytest.main(args)
    report = next(tmp_path.glob("*.json"))
    return json.loads(report.read_text())["results"]


@pytest.mark.parametrize(("mutant", "family"), list(KILLS.items()))
def test_mutant_is_killed(mutant: str, family: str, tmp_path: Path) -> None:
    results = run_suite(f"tests.mutants:{mutant.strip()}", family, tmp_path)
    failed = [k for k, v in results.items() if v["outcome"] in ("fail", "error")]
    assert failed, f"mutant {mutant.strip()} survived {family}: {results}"


@pytest.mark.parametrize("family", sorted(set(KILLS.values())))
def test_reference_passes(family: str, tmp_path: Path) -> None:
    results = run_suite("ref", family, tmp_path)
    bad = {k: v for k, v in results.items() if v["outcome"] not in ("pass", "not applicable")}
    assert not bad, bad


def test_every_family_kills_two_mutants() -> None:
    families = [f.stem for f in SUITE.glob("test_*.py")]
    for family in families:
        assert sum(1 for f in KILLS.values() if f == family) >= 2, family
