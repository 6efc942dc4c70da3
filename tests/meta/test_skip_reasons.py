"""One reason, one wording: the skip summary counts skips per distinct reason text.

``skip_summary.py`` prints one line per reason with its count, so two wordings
of one cause (``needs mpi4py`` and ``mpi4py is not installed``) print as two
causes. Every skip reason in the tests that names one of the causes below is
one text (a backend's name, filled in by an f-string, aside).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="checks of the repository's text run once, in the NumPy leg",
)

#: Causes that must each have a single wording, by a word every wording names.
CAUSES = ("mpi4py", "float16", "CORRMOM_CHAINER_PYTHON", "importable here", "Numba is not")

#: A skip reason as written: pytest.skip("..."), skip(f"..."), reason="...".
REASON = re.compile(r"""(?:pytest\.skip\(|reason=|^[A-Z_]+ = )\s*f?(["'])(.+?)\1""", re.MULTILINE)


def reasons() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in TESTS.rglob("*.py"):
        if path.stem == "test_skip_summary" or path == Path(__file__):
            continue  # the summary's own tests use made-up reasons
        for _, text in REASON.findall(path.read_text(encoding="utf-8")):
            for cause in CAUSES:
                if cause in text:
                    found[cause].add(re.sub(r"\{[^}]*\}", "{}", text))
    return found


def test_every_cause_has_one_wording():
    found = reasons()
    assert set(found) == set(CAUSES), f"a cause is no longer skipped on: {set(CAUSES) - set(found)}"
    several = {cause: sorted(texts) for cause, texts in found.items() if len(texts) > 1}
    assert not several, f"skip reasons with more than one wording: {several}"
