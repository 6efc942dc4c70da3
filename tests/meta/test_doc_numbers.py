"""Every count, list and total that the README and the docs state is the one its source gives.

A number typed into prose goes stale silently when the code moves on; each
is checked here against where it comes from: the mutant count against the
meta-tests' list, the ports' conformance totals against the generated
matrix (``docs/_generated/conformance-matrix.md``, written by ``nox -s
conformance-matrix``), the registered ``--impl`` names against the suite's
registry.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from corrmom_conformance.adapters import REGISTRY
from tests.conformance_meta.test_mutants import KILLS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MATRIX = (ROOT / "docs" / "_generated" / "conformance-matrix.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="checks of the repository's text run once, in the NumPy leg",
)


def _matrix_totals() -> dict[str, str]:
    """The matrix's totals per column (``'torch'`` -> ``'17 pass, 17 expected deviation, ...'``)."""
    totals = {}
    for line in MATRIX.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("<abbr"):
            column = re.sub(r"<[^>]+>", "", cells[0])
            totals[column] = cells[2]
    assert totals, "no totals table in the generated matrix: its layout changed"
    return totals


def test_readme_counts_every_mutant():
    distinct = {mutant for mutant, _ in KILLS}  # every (mutant, family) pair the meta-tests run
    (stated,) = re.findall(r"(\d+) mutants", README)
    assert int(stated) == len(distinct), (
        f"README says {stated} mutants; tests/conformance_meta defines {len(distinct)}"
    )


@pytest.mark.parametrize("impl", ["torch", "ref-torch"])
def test_porting_page_totals_are_the_matrix_totals(impl):
    page = (ROOT / "docs" / "porting.md").read_text(encoding="utf-8")
    stated = re.findall(rf"`--impl={re.escape(impl)}`: ([^|]+?) \|", page)
    assert stated, f"docs/porting.md no longer states the totals of --impl={impl}: update this test"
    assert [s.strip() for s in stated] == [_matrix_totals()[impl]] * len(stated)


def test_conformance_page_lists_every_registered_name():
    page = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    (listed,) = re.findall(r"`--impl` takes a registered name \(([^)]*)\)", page)
    names = re.findall(r"`([^`]+)`", listed)
    assert names == list(REGISTRY), f"docs/conformance.md lists {names}; the registry has {list(REGISTRY)}"
    for name in REGISTRY:
        assert f"--impl={name}" in page or name == "ref", f"docs/conformance.md shows no command for {name}"
