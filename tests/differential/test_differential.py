"""The differential fuzz as a test: no divergence from real Chainer 7.8.1 in the scenarios run.

Needs Chainer 7.8.1 (NumPy 1.26) importable; ``nox -s differential`` builds
that environment, once without and once with Numba. The count is
``CORRMOM_DIFFERENTIAL_SCENARIOS`` (default 1000), ten times that with
``CORRMOM_DIFFERENTIAL_THOROUGH=1``.
"""

from __future__ import annotations

import pytest

pytest.importorskip(
    "chainer",
    reason="real Chainer 7.8.1 is not importable here (`nox -s differential` and `nox -s fixtures` install it)",
)

from differential.fuzz import default_count, fuzz


def test_no_divergence_from_chainer() -> None:
    report = fuzz(default_count())
    print(report.summary())
    assert report.divergence is None, f"{report.divergence}\n---- minimal reproducer ----\n{report.script}"
    assert report.operations > 4 * report.scenarios  # the scenarios did run, mostly to the end
