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


# -- conformance suite ------------------------------------------------------------

#: One virtualenv per conformance environment: what it installs, in order
#: (each inner list is one ``pip install``), and the suite options it implies.
CONFORMANCE_ENVS: dict[str, tuple[list[list[str]], list[str]]] = {
    **{
        f"ref-{backend}": ([requirements], ["--impl=ref", f"--backend={backend}"])
        for backend, requirements in BACKEND_REQUIREMENTS.items()
    },
    "chainer": (
        [["numpy==1.26.4", "setuptools<70", "wheel"], ["--no-build-isolation", "chainer==7.8.1"]],
        ["--impl=chainer"],
    ),
    "torch": ([["numpy>=2", TORCH]], ["--impl=torch"]),
    "optax": ([["numpy>=2", "jax[cpu]>=0.4.30", "optax>=0.2"]], ["--impl=optax"]),
}


def _conformance_env(args: list[str]) -> str:
    """The environment name for ``--impl``/``--backend`` in ``args`` (defaults: ref on numpy)."""
    options = {"--impl": "ref", "--backend": "numpy"}
    for i, arg in enumerate(args):
        for key in options:
            if arg.startswith(key + "="):
                options[key] = arg.split("=", 1)[1]
            elif arg == key and i + 1 < len(args):
                options[key] = args[i + 1]
    impl, backend = options["--impl"], options["--backend"]
    if impl in ("chainer", "torch", "optax"):
        return impl
    return f"ref-{backend}"  # ref, or a module:factory adapter run on that backend


@nox.session(venv_backend="none")
def conformance(session: nox.Session) -> None:
    """The conformance suite for one implementation: ``nox -s conformance -- --impl=chainer``."""
    env = _conformance_env(session.posargs)
    if env == "ref-cupy" and not _has_cuda():
        session.skip("no CUDA device on this machine")
    session.notify(f"conformance_env(env='{env}')", posargs=session.posargs)


@nox.session
@nox.parametrize("env", list(CONFORMANCE_ENVS))
def conformance_env(session: nox.Session, env: str) -> None:
    """The suite in the virtualenv of one implementation (run through ``conformance``)."""
    steps, implied = CONFORMANCE_ENVS[env]
    for requirements in steps:
        session.install(*requirements)
    session.install("-e", ".[conformance]")
    given = {arg.split("=", 1)[0] for arg in session.posargs}
    defaults = [arg for arg in implied if arg.split("=", 1)[0] not in given]
    session.run("pytest", "conformance", "-p", "no:cacheprovider", *defaults, *session.posargs)


@nox.session(name="conformance-matrix", venv_backend="none")
def conformance_matrix(session: nox.Session) -> None:
    """Every implementation available here; the combined table in docs/_generated/conformance-matrix.md."""
    reports = "docs/_generated/conformance"
    shutil.rmtree(reports, ignore_errors=True)
    for env in CONFORMANCE_ENVS:
        if env == "ref-cupy" and not _has_cuda():
            continue
        session.notify(f"conformance_env(env='{env}')", posargs=[f"--report={reports}", *session.posargs])
    session.notify("conformance_combine")


@nox.session(venv_backend="none")
def conformance_combine(session: nox.Session) -> None:
    """Combine the reports under docs/_generated/conformance into one Markdown table."""
    session.run("python3", "-m", "conformance.matrix", "docs/_generated/conformance",
                "docs/_generated/conformance-matrix.md")
