"""The tests are grouped by subject (tests/README.md says where a test for X goes).

Test modules live in subject folders, not at the top of ``tests/``. The
folders have no ``__init__.py`` and ``tests/`` is on ``sys.path`` (the
conftest puts it there for ``helpers`` and ``backends``), so a folder named
like a package the tests import would be found as an empty namespace package
wherever that package is missing: ``importlib.util.find_spec("chainer")``
answered for a folder ``tests/chainer/``, and a test wanting real Chainer ran
without it. Basenames are unique, since pytest imports each module by it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

#: Packages a test imports or looks for, and the names of this project's own.
IMPORTED = {
    "chainer",
    "corrmom_conformance",
    "corrmom_ref",
    "cupy",
    "dask",
    "hypothesis",
    "jax",
    "mpi4py",
    "numba",
    "numpy",
    "optax",
    "pytest",
    "torch",
    "array_api_strict",
    "benchmarks",
}


def test_no_test_module_at_the_top():
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []


def test_no_folder_shadows_an_imported_package():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir()}  # tests/ is on sys.path, its subfolders are not
    assert folders & IMPORTED == set()


def test_test_module_basenames_are_unique():
    counts = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in counts.items() if n > 1] == []
