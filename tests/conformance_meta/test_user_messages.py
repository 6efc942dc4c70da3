"""What a third party sees: report names, a misspelled factory, the shrink cap, the default implementation, skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corrmom_conformance.report import Report
from tests.conformance_meta.test_mutants import (  # noqa: F401  (pytestmark: the same NumPy-leg skip)
    ROOT,
    pytestmark,
)

CHECKOUT_PATH = os.pathsep.join(str(ROOT / p) for p in ("src", "."))
CHECKS = ROOT / "src" / "corrmom_conformance" / "checks"


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CORRMOM_CONFORMANCE_IMPL"}
    env["PYTHONPATH"] = CHECKOUT_PATH
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "corrmom_conformance.plugin",
        "-p",
        "no:cacheprovider",
        *args,
    ]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_report_path_with_dots_is_kept_whole(tmp_path):
    """The nox session's default name for a module:factory adapter has dots: the suffix is appended, not swapped in."""
    base = tmp_path / "reports" / "conformance-mysgd.conformance_adapter:make_adapter-native"
    json_path, md_path = Report("mysgd", "1", "numpy", []).write(base)
    assert (json_path.name, md_path.name) == (base.name + ".json", base.name + ".md")
    assert sorted(p.name for p in base.parent.iterdir()) == [base.name + ".json", base.name + ".md"]
    Report("mysgd", "1", "numpy", []).write(tmp_path / "named.json")  # an explicit ending is not doubled
    assert (tmp_path / "named.json").exists() and not (tmp_path / "named.json.json").exists()


def test_misspelled_factory_is_one_line(tmp_path):
    done = _pytest(
        tmp_path,
        str(CHECKS / "test_exactness.py"),
        "--corrmom-impl=corrmom_conformance.adapters.reference:make_adaptr",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4, output[-3000:]  # pytest's usage error
    assert "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]
    assert (
        "module 'corrmom_conformance.adapters.reference' has no factory 'make_adaptr'; "
        "callables named like an adapter there: ReferenceAdapter, make_adapter"
    ) in output, output[-3000:]


def test_without_an_impl_the_run_says_it_tests_the_reference(tmp_path):
    done = _pytest(tmp_path, str(CHECKS / "test_exactness.py"), "-k", "float32")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "corrmom conformance: testing the reference (ref) on numpy" in done.stdout
    assert ": no --corrmom-impl given (nor $CORRMOM_CONFORMANCE_IMPL)" in done.stdout
    done = _pytest(tmp_path, str(CHECKS / "test_exactness.py"), "-q", "-k", "float32")
    assert "the reference was tested: no --corrmom-impl given" in done.stdout
    named = _pytest(tmp_path, str(CHECKS / "test_exactness.py"), "-k", "float32", "--corrmom-impl=ref")
    assert "no --corrmom-impl given" not in named.stdout


def test_the_shrink_cap_prints_the_suites_line_not_hypothesis_plea(tmp_path):
    """A cap of 0 s trips at once: the suite says it stopped shrinking, Hypothesis' five-minute plea is gone."""
    done = _pytest(
        tmp_path,
        f"{CHECKS / 'test_equations.py'}::test_trajectory_matches_eq9",
        "--corrmom-impl=tests.conformance_meta.mutants:uncorrected",
        "--corrmom-shrink-seconds=0",
        "--hypothesis-seed=0",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "PLEASE REPORT THIS" not in output and "five minutes" not in output, output[-3000:]
    assert "corrmom conformance: stopped shrinking after the suite's cap of 0 s" in output, output[-3000:]


def test_a_check_skipped_in_its_body_is_not_applicable(tmp_path):
    """ref-torch ships no GradientLARS: the check skips from its body and is reported not applicable, not failed."""
    report = tmp_path / "r"
    done = _pytest(
        tmp_path,
        f"{CHECKS / 'test_machinery.py'}::test_lars_below_its_threshold_is_weight_decay",
        "--corrmom-impl=ref-torch",
        f"--corrmom-report={report}",
    )
    if "No module named 'torch'" in done.stdout + done.stderr:
        import pytest

        pytest.skip("torch is not installed")
    import json

    entries = json.loads(report.with_name("r.json").read_text())["entries"]
    assert [e["outcome"] for e in entries] == ["not applicable"], entries


def test_an_adapter_module_not_installed_says_how_to_install_it(tmp_path):
    done = _pytest(
        tmp_path, str(CHECKS / "test_exactness.py"), "--corrmom-impl=mysgd_not_here.adapter:make_adapter"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4 and "Traceback" not in output, output[-3000:]
    assert "no module 'mysgd_not_here' in " in output, output[-3000:]
    assert "python -m pip install -e . in its directory" in output, output[-3000:]
