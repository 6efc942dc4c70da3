"""Sessions for corrmom-ref: the backend matrix, the conformance runs, docs, benchmarks.

Every session installs what it needs into its own virtualenv, so a fresh machine
with only Python and pip runs any of them with ``python3 -m pip install nox &&
python3 -m nox -s NAME``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

#: The one CPU build of PyTorch that installs from the local wheel cache
#: (a bare ``torch`` would pull a multi-GB CUDA build).
TORCH = "torch==2.13.0"

#: What each backend leg installs on top of ``.[test]``.
BACKEND_REQUIREMENTS: dict[str, list[str]] = {
    "numpy": ["numpy>=2"],
    "numpy1": ["numpy==1.26.4"],
    "array_api_strict": ["numpy>=2", "array-api-strict>=2.2"],
    "torch": ["numpy>=2", TORCH],
    "jax": ["numpy>=2", "jax[cpu]>=0.4.30"],
    "dask": ["numpy>=2", "dask[array]>=2024.1"],
    "cupy": ["numpy>=2", "cupy-cuda12x>=13"],
}


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


@nox.session
@nox.parametrize("backend", list(BACKEND_REQUIREMENTS))
def tests(session: nox.Session, backend: str) -> None:
    """Unit tests of the reference library on one array backend."""
    if backend == "cupy" and not _has_cuda():
        session.skip("no CUDA device on this machine")
    session.install("-e", ".[test]", *BACKEND_REQUIREMENTS[backend])
    session.run(
        "pytest",
        "tests",
        *session.posargs,
        env={"CORRMOM_BACKENDS": backend},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy over the library."""
    session.install("ruff", "mypy", "numpy>=2", "-e", ".")
    session.run("ruff", "check", "src")
    session.run("ruff", "format", "--check", "src")
    session.run("mypy")


#: Real Chainer, for the fixtures: its last release installs only from an sdist
#: whose setup.py needs pkg_resources, and it needs NumPy < 2.
CHAINER = ["numpy==1.26.4", "setuptools<70", "wheel"]


@nox.session
def fixtures(session: nox.Session) -> None:
    """Regenerate tests/fixtures/chainer with real Chainer 7.8.1, then check both ways.

    Runs the scenarios of tools/make_chainer_fixtures.py in Chainer (commit the
    changed files), then the Chainer-fixture tests with Chainer importable, so
    that snapshots saved by corrmom_ref are also loaded and continued in Chainer.
    """
    session.install(*CHAINER)
    session.install("--no-build-isolation", "chainer==7.8.1")
    session.run("python", "tools/make_chainer_fixtures.py")
    session.install("-e", ".[test]", "numpy==1.26.4")
    session.run("pytest", "tests/test_chainer_fixtures.py", *session.posargs, env={"CORRMOM_BACKENDS": "numpy1"})


#: What the documentation build needs besides the library (figures use NumPy).
DOCS_REQUIREMENTS = ["sphinx>=8", "myst-parser>=4", "furo", "latex2mathml>=3.77", "matplotlib>=3.8", "sympy>=1.12", "numpy>=2"]


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site offline into docs/_build/html, then test it.

    Fails on any Sphinx warning (broken reference, missing docstring of a
    public name, math that cannot be rendered). Then runs every code example
    on the pages and in the docstrings as a doctest, and tests/docs: the
    derivation proved with sympy, the built site (no external resources; the
    math laid out by headless Chromium, screenshot in docs/_build/screenshots;
    skipped with the reason when Debian's ``chromium`` is not installed).
    """
    session.install("-e", ".[test]", *DOCS_REQUIREMENTS)
    session.run("sphinx-build", "-E", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html")
    pages = sorted(str(page) for page in Path("docs").glob("*.md"))
    session.run("pytest", "--doctest-glob=*.md", "--doctest-modules", *pages, "src/corrmom_ref")
    session.run("pytest", "tests/docs", *session.posargs, env={"CORRMOM_DOCS_TESTS": "1"})
