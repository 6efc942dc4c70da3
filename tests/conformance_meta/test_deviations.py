"""Expected deviations are reported as such, never as passes; stale or now-passing ones are flagged."""

from __future__ import annotations

from tests.conformance_meta.test_mutants import _run, pytestmark  # noqa: F401  (same NumPy-leg skip)

DEVIATIONS = """
[[deviation]]
check = "test_loss_scaling::test_clamped_to_65504"
reason = "declared: this mutant has no upper clamp"

[[deviation]]
check = "test_loss_scaling::test_rejects_interval_below_one[0]"
reason = "declared wrongly: the mutant validates intervals like Chainer"

[[deviation]]
check = "test_loss_scaling::test_no_such_check"
reason = "matches nothing"
"""


def test_declared_deviation_outcomes(tmp_path, monkeypatch):
    declared = tmp_path / "deviations.toml"
    declared.write_text(DEVIATIONS)
    monkeypatch.setenv("CORRMOM_TEST_DEVIATIONS", str(declared))
    result = _run(
        "tests.conformance_meta.mutants:no_clamp_declared",
        ["test_loss_scaling"],
        tmp_path,
        "-k",
        "clamped or rejects_interval",
    )
    outcome = {e["check"]: e["outcome"] for e in result["entries"]}
    assert outcome["test_loss_scaling.py::test_clamped_to_65504"] == "expected deviation"
    assert outcome["test_loss_scaling.py::test_rejects_interval_below_one[0]"] == "deviation now passes"
    assert outcome["test_loss_scaling.py::test_rejects_interval_below_one[-1]"] == "pass"
    assert outcome["test_loss_scaling.py::test_clamped_at_one"] == "fail"  # undeclared: a plain failure
    assert result["stale_deviations"] == ["test_loss_scaling::test_no_such_check"]
