"""Sessions for corrmom-ref: the backend matrix, the conformance runs, docs, benchmarks.

Every session installs what it needs into its own virtualenv, so a fresh machine
with only Python and pip runs any of them with ``python3 -m pip install nox &&
python3 -m nox -s NAME``.
"""

from __future__ import annotations

import shutil

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


#: MPI for the ``distributed`` session, all from PyPI: the ``mpich`` wheel
#: brings libmpi and ``mpiexec`` into the session's virtualenv, so the machine
#: needs no system MPI (mpi4py's wheel loads whichever libmpi it finds first).
MPI_REQUIREMENTS = ["mpich", "mpi4py>=4.0"]


@nox.session
def distributed(session: nox.Session) -> None:
    """Data-parallel tests under real MPI: ``mpiexec -n 2`` and ``-n 3`` (and the serial skips)."""
    session.install("-e", ".[test,mpi]", *MPI_REQUIREMENTS)
    pytest_args = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/distributed", *session.posargs]
    session.run("python", *pytest_args)
    for ranks in ("2", "3"):
        # MPIEXEC_TIMEOUT (hydra): a deadlocked collective fails the run instead of hanging CI.
        session.run("mpiexec", "-n", ranks, "python", *pytest_args, env={"MPIEXEC_TIMEOUT": "600"})
