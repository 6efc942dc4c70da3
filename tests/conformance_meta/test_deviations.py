"""Expected deviations are reported as such, never as passes; stale or now-passing ones are flagged;
a deviation that fails otherwise than declared is a failure; a deviation must name what deviates."""

from __future__ import annotations

from tests.conformance_meta.test_mutants import _run, pytestmark  # noqa: F401  (same NumPy-leg skip)

DEVIATIONS = r"""
[[deviation]]
check = "test_loss_scaling::test_clamped_to_65504"
match = "the scale reached \\d+(\\.\\d+)?, above 65504"
reason = "declared: this mutant has no upper clamp"

[[deviation]]
check = "test_loss_scaling::test_rejects_interval_below_one[0]"
match = "DID NOT RAISE"
reason = "declared wrongly: the mutant validates intervals like Chainer"

[[deviation]]
check = "test_loss_scaling::test_clamped_at_one"
match = "loss scale after step 3 is "
reason = "declared for step 3, but the mutant already fails at step 1 (0.5): a different failure"

[[deviation]]
check = "test_loss_scaling::test_no_such_check"
match = "anything"
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
        "clamped or rejects_interval or doubles_every_step",
    )
    outcome = {e["check"]: e["outcome"] for e in result["entries"]}
    assert outcome["test_loss_scaling.py::test_clamped_to_65504"] == "expected deviation"
    assert outcome["test_loss_scaling.py::test_rejects_interval_below_one[0]"] == "deviation now passes"
    assert outcome["test_loss_scaling.py::test_rejects_interval_below_one[-1]"] == "pass"
    assert outcome["test_loss_scaling.py::test_doubles_every_step_before_any_overflow"] == "pass"
    # declared, but failing with another message: a failure, and the report says why
    assert outcome["test_loss_scaling.py::test_clamped_at_one"] == "fail"
    reasons = {e["check"]: e["reason"] for e in result["entries"]}
    assert (
        "fails otherwise than its declared deviation" in reasons["test_loss_scaling.py::test_clamped_at_one"]
    )
    assert result["stale_deviations"] == ["test_loss_scaling::test_no_such_check"]


def test_deviation_must_name_what_deviates(tmp_path):
    from corrmom_conformance import deviations

    bare = tmp_path / "bare.toml"
    bare.write_text('[[deviation]]\ncheck = "test_state_machine::runTest"\nreason = "everything"\n')
    try:
        deviations.load("x", bare)
    except ValueError as error:
        assert "must name what deviates" in str(error)
    else:
        raise AssertionError("a deviation without 'match' or 'without' was accepted")
