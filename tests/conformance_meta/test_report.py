"""The report names the seed, date, versions and command, counts per family, and gives each failure a reproducer that works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.conformance_meta.test_mutants import (  # noqa: F401  (pytestmark: the same NumPy-leg skip)
    ROOT,
    _run,
    pytestmark,
)

MUTANT = "tests.conformance_meta.mutants:uncorrected"
#: The checkout, importable without installing it (the mutants are under tests/).
CHECKOUT_PATH = os.pathsep.join(str(ROOT / p) for p in ("src", "."))


def test_report_names_the_run_and_counts_per_family(tmp_path):
    result = _run(MUTANT, ["test_equations", "test_hooks"], tmp_path, "-k", "eq9 or registration_order")
    assert result["seed"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", result["date"]), result["date"]
    assert set(result["versions"]) >= {"python", "numpy", "hypothesis", "pytest"}
    assert "--hypothesis-seed=0" in result["command"] and MUTANT in result["command"]
    families = result["families"]
    assert families["test_hooks"]["pass"] == 1 and families["test_hooks"]["fail"] == 0
    assert families["test_equations"]["fail"] >= 1
    assert sum(f["fail"] for f in families.values()) == result["counts"]["fail"]


def test_each_failure_has_a_reproducer_that_fails_the_same_way(tmp_path):
    result = _run(MUTANT, ["test_equations"], tmp_path, "-k", "test_trajectory_matches_eq9")
    failed = [e for e in result["entries"] if e["outcome"] == "fail"]
    assert failed, result["entries"]
    for entry in failed:
        command = entry["reproducer"]["command"]
        assert "--hypothesis-seed=0" in command and f"--corrmom-impl={MUTANT}" in command, command
        script = tmp_path / "repro.py"
        script.write_text(entry["reproducer"]["script"])
        env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH}
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode != 0, f"the reproducer of {entry['check']} passed:\n{script.read_text()}"
        assert "first diverges at step" in done.stderr, done.stderr[-2000:]


def test_a_seed_is_drawn_and_reported_when_none_is_given(tmp_path):
    report = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH}
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "src" / "corrmom_conformance" / "checks" / "test_hooks.py"),
        "-k",
        "registration_order",
        f"--corrmom-report={report}",
        "-p",
        "no:cacheprovider",
        "-p",
        "corrmom_conformance.plugin",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    seed = json.loads(report.with_suffix(".json").read_text())["seed"]
    assert seed.isdigit(), seed
    assert f"seed: {seed} (drawn for this run" in done.stdout
    assert f"hypothesis seed: {seed}" in done.stdout


class _PlantedFailure:
    """An adapter whose every step fails with a known two-line assertion message."""

    name, version, backend, state_sign = "planted", "0", "numpy", 1.0
    capabilities = frozenset({"float64"})
    MESSAGE = "planted: the step refuses\nsecond line of the message"

    def create(self, params, *, lr, momentum):
        planted = self

        class Refusing:
            def step(self, grads):
                raise AssertionError(planted.MESSAGE)

            def params(self):
                return dict(params)

        return Refusing()


def planted_failure() -> _PlantedFailure:
    return _PlantedFailure()


def test_a_failure_reason_is_the_first_line_of_the_assertion_message(tmp_path):
    """Read from pytest's report object (its crash entry), whatever the traceback style."""
    for style in ("auto", "native", "short"):
        result = _run(
            "tests.conformance_meta.test_report:planted_failure",
            ["test_equations"],
            tmp_path,
            "-k",
            "test_zero_initial_state",
            f"--tb={style}",
        )
        (entry,) = [e for e in result["entries"] if e["outcome"] == "fail"]
        assert entry["reason"] == "AssertionError: planted: the step refuses", (style, entry)


def test_two_runs_in_one_process_keep_their_own_state(tmp_path):
    """The run's state lives in each config's stash: a second run does not inherit the first one's adapter."""
    check = ROOT / "src" / "corrmom_conformance" / "checks" / "test_equations.py"
    script = tmp_path / "two_runs.py"
    script.write_text(
        "import sys, pytest\n"
        "for impl, name in (('ref', 'first'), ('tests.conformance_meta.test_report:planted_failure', 'second')):\n"
        f"    pytest.main([{str(check)!r}, '-p', 'corrmom_conformance.plugin', '--corrmom-impl=' + impl,\n"
        "                 '-k', 'test_zero_initial_state', '--hypothesis-seed=0', '-q', '-p', 'no:cacheprovider',\n"
        f"                 '--corrmom-report=' + {str(tmp_path)!r} + '/' + name])\n"
    )
    env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert (tmp_path / "second.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    first = json.loads((tmp_path / "first.json").read_text())
    second = json.loads((tmp_path / "second.json").read_text())
    assert first["impl"] == "ref" and first["counts"]["pass"] == 1
    assert second["impl"] == "planted" and second["counts"]["fail"] == 1
