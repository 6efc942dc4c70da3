"""Sessions for corrmom-ref: the backend matrix, the conformance runs, docs, benchmarks.

Every session installs what it needs into its own virtualenv, so a fresh machine
with only Python and pip runs any of them with ``python3 -m pip install nox &&
python3 -m nox -s NAME``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import nox


class _WithoutUvNotice(logging.Filter):
    """Drops nox's "uv binary not found." line: these sessions use venv and pip, never uv."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "uv binary not found."


logging.getLogger("nox").addFilter(_WithoutUvNotice())

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _backend_registry() -> ModuleType:
    """The suite's backend registry (src/corrmom_conformance/backends.py), loaded by its path: nox needs no install.

    The module imports only the standard library at module level.
    """
    path = Path(__file__).resolve().parent / "src" / "corrmom_conformance" / "backends.py"
    spec = importlib.util.spec_from_file_location("corrmom_backend_registry", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


BACKEND_REGISTRY = _backend_registry()

#: The one CPU build of PyTorch that installs from the local wheel cache
#: (a bare ``torch`` would pull a multi-GB CUDA build).
TORCH = "torch==2.13.0"

#: NumPy's fast path (a compiled loop); a release that supports the NumPy it is given.
NUMBA = "numba>=0.61"

#: The NumPy of every leg but ``numpy1`` (which installs NumPy 1.26).
NUMPY2 = "numpy>=2"

#: What each backend leg installs on top of ``.[test]``, in the registry's order; a
#: registry backend missing here has no leg of its own (``numpy_readonly`` rides
#: along with the NumPy legs). The pins live here, not in the shipped suite.
BACKEND_REQUIREMENTS: dict[str, list[str]] = {
    "numpy": [NUMPY2],
    "numpy1": ["numpy==1.26.4"],
    "numba": [NUMPY2, NUMBA],
    "array_api_strict": [NUMPY2, "array-api-strict>=2.2"],
    "torch": [NUMPY2, TORCH],
    "jax": [NUMPY2, "jax[cpu]>=0.4.30", "optax>=0.2"],  # optax: the tests of corrmom_ref.optax
    "dask": [NUMPY2, "dask[array]>=2024.1"],
    "cupy": [NUMPY2, "cupy-cuda12x>=13"],
}


def _takes_no_arguments(session: nox.Session) -> None:
    """One line instead of arguments silently ignored."""
    if session.posargs:
        session.error(f"{session.name} takes no arguments after --; got: {' '.join(session.posargs)}")


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


def _needs_missing_gpu(backend: str) -> bool:
    """Whether the backend needs a CUDA device (the registry's ``needs_gpu``) and this machine has none."""
    return BACKEND_REGISTRY.REGISTRY[backend].needs_gpu and not _has_cuda()


#: The backends of the README's test command, which share one virtualenv: every
#: CPU backend that can (NumPy 2, array-api-strict, PyTorch, JAX, Dask). Numba
#: replaces NumPy's step and NumPy 1.26 needs a NumPy of its own, so those two
#: run in ``tests-backend`` only.
QUICK_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask"]

#: pytest's arguments for the tests that ``packaging`` runs instead (they build
#: and install the wheel in fresh virtualenvs).
WITHOUT_PACKAGING = ["--ignore=tests/packaging"]


def _runnable_backends() -> list[str]:
    """The backends with a test leg that can run on this machine (CuPy only with a CUDA device)."""
    return [b for b in BACKEND_REQUIREMENTS if not _needs_missing_gpu(b)]


@nox.session
def tests(session: nox.Session) -> None:
    """The unit tests on NumPy 2, array-api-strict, PyTorch, JAX and Dask: one virtualenv, every core.

    The README's test command. Hypothesis runs its quick profile (fewer
    examples per property); ``tests-backend`` runs each backend in its own
    virtualenv with the full budget, NumPy 1.26 and Numba included, and
    ``packaging`` the wheel and install-line tests. CI runs all three.
    """
    requirements = sorted({r for b in QUICK_BACKENDS for r in BACKEND_REQUIREMENTS[b]})
    session.install("-e", ".[test]", "nox", "pytest-xdist", *requirements)
    session.run(
        "pytest",
        "tests",
        "-n",
        "auto",
        *WITHOUT_PACKAGING,
        *session.posargs,
        env={"CORRMOM_BACKENDS": ",".join(QUICK_BACKENDS), "HYPOTHESIS_PROFILE": "quick"},
    )


@nox.session(name="tests-backend")
@nox.parametrize("backend", _runnable_backends())
def tests_backend(session: nox.Session, backend: str) -> None:
    """The unit tests on one array backend in its own virtualenv, full Hypothesis budget.

    ``nox -s tests-backend`` runs every backend that can run here (CuPy only
    where a CUDA device is; no virtualenv is made for it elsewhere);
    ``nox -s "tests-backend(backend='torch')"`` one of them.
    """
    # nox: tests/meta/test_noxfile.py runs the sessions' argument checks
    session.install("-e", ".[test]", "nox", *BACKEND_REQUIREMENTS[backend])
    session.run("pytest", "tests", *WITHOUT_PACKAGING, *session.posargs, env={"CORRMOM_BACKENDS": backend})


@nox.session
def packaging(session: nox.Session) -> None:
    """Builds the sdist and the wheel, checks what they carry, and installs every install line of the docs.

    Each install runs in a fresh virtualenv (tests/packaging); pip needs PyPI or its cache.
    """
    session.install("-e", ".[test]", "build")  # build: the sdist test
    session.run("pytest", "tests/packaging", *session.posargs, env={"CORRMOM_BACKENDS": "numpy"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) over the whole tree and mypy over the library and the suite."""
    _takes_no_arguments(session)
    session.install("ruff", "mypy", "numpy>=2", "-e", ".[test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def fixtures(session: nox.Session) -> None:
    """Regenerate tests/fixtures/chainer with real Chainer 7.8.1, then check both ways.

    Runs the scenarios of tools/make_chainer_fixtures.py in Chainer (commit the
    changed files), then the Chainer-fixture tests with Chainer importable, so
    that snapshots saved by corrmom_ref are also loaded and continued in Chainer,
    and the extension-API tests' side-by-side checks against Chainer.
    """
    session.install(*CHAINER_PREREQUISITES)  # defined below, with the conformance sessions
    session.install("--no-build-isolation", CHAINER)
    session.run("python", "tools/make_chainer_fixtures.py")
    # the Chainer run of tests/torch_port/test_chainer_training_loop.py
    session.run("python", "tools/make_torch_port_fixture.py")
    session.install("-e", ".[test]", "numpy==1.26.4")
    session.run(
        "pytest",
        "tests/chainer_agreement/test_recorded_scenarios.py",
        "tests/optimizer/test_extension_api.py",
        *session.posargs,
        env={"CORRMOM_BACKENDS": "numpy1"},
    )


#: The recipe for real Chainer 7.8.1: its sdist's setup.py needs pkg_resources
#: and it needs NumPy < 2 (chainer-semantics.md, "Installing real Chainer").
CHAINER_PREREQUISITES = ["numpy==1.26.4", "setuptools<70", "wheel"]
CHAINER = "chainer==7.8.1"

#: What each --impl needs besides the suite (the reference's backend comes from --backend).
IMPL_REQUIREMENTS: dict[str, list[str]] = {
    "torch": BACKEND_REQUIREMENTS["torch"],
    "optax": BACKEND_REQUIREMENTS["jax"],
    "ref-torch": BACKEND_REQUIREMENTS["torch"],
    "ref-optax": BACKEND_REQUIREMENTS["jax"],
}


#: The suite's options that ``nox -s conformance`` takes without their pytest prefix
#: (``--impl=chainer`` is passed on as ``--corrmom-impl=chainer``); flags take no value.
SUITE_OPTIONS = {
    "impl": True,
    "backend": True,
    "report": True,
    "shrink-seconds": True,
    "thorough": False,
    "no-shrink": False,
}


def _option(args: list[str], name: str, default: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in ``args``."""
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return default


def _pytest_args(args: list[str]) -> list[str]:
    """``args`` with the suite's short options spelled as the plugin's ``--corrmom-*`` options."""
    out = []
    for arg in args:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        out.append(f"--corrmom-{arg[2:]}" if name in SUITE_OPTIONS else arg)
    return out


def _known_impls() -> list[str]:
    return ["ref", "chainer", *IMPL_REQUIREMENTS]


def _check_suite_args(session: nox.Session, impl: str, backend: str) -> None:
    """One line naming the bad value and the valid ones, instead of a traceback."""
    if impl not in _known_impls() and ":" not in impl:
        session.error(
            f"unknown --impl={impl!r}; valid: {', '.join(_known_impls())} or 'package.module:factory'"
        )
    if backend not in BACKEND_REQUIREMENTS:
        session.error(f"unknown --backend={backend!r}; valid: {', '.join(BACKEND_REQUIREMENTS)}")


def _impl_installs(impl: str, backend: str) -> list[list[str]]:
    """The ``pip install`` commands of one implementation's virtualenv, in order."""
    suite = ["-e", ".", "pytest", "hypothesis"]
    if impl == "chainer":
        return [CHAINER_PREREQUISITES, ["--no-build-isolation", CHAINER], suite]
    if impl in IMPL_REQUIREMENTS:
        return [suite + IMPL_REQUIREMENTS[impl]]
    return [suite + BACKEND_REQUIREMENTS[backend]]


#: Files whose content decides what ``pip install -e .`` installs (the code itself is linked, not copied).
PROJECT_FILES = ("pyproject.toml",)


def _suite_venv(session: nox.Session, impl: str, backend: str) -> Path:
    """The virtualenv of one implementation, built once and reused while what it installs is unchanged.

    Each (impl, backend) has its own folder under ``.nox/conformance-envs``;
    a file in it records what was installed (the pip commands, the Python, the
    project's packaging files) and is written only after every install
    succeeded, so a changed requirement or an interrupted install rebuilds it.
    """
    installs = _impl_installs(impl, backend)
    project = hashlib.sha256(b"".join(Path(f).read_bytes() for f in PROJECT_FILES)).hexdigest()
    record = json.dumps({"python": sys.version, "installs": installs, "project": project}, indent=1)
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{impl}-{backend}")
    venv = Path(".nox", "conformance-envs", slug).resolve()
    marker = venv / "corrmom-installed.json"
    if marker.exists() and marker.read_text(encoding="utf-8") == record:
        session.log(f"reusing {venv} (nothing it installs has changed)")
        return venv
    session.run(sys.executable, "-m", "venv", "--clear", str(venv), external=True)
    for install in installs:
        session.run(_bin(venv, "python"), "-m", "pip", "install", "-q", *install, external=True)
    marker.write_text(record, encoding="utf-8")
    return venv


def _bin(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if os.name == "nt" else "bin") / name)


@nox.session(venv_backend="none")  # one virtualenv per implementation, see _suite_venv
def conformance(session: nox.Session) -> None:
    """The conformance suite on one implementation (default: the reference on NumPy).

    ``nox -s conformance -- --impl=chainer``; other options pass through to
    pytest (``--backend=torch``, ``--thorough``, ``--no-shrink``,
    ``--hypothesis-seed=N``, ``--report=PATH``; the suite's own are passed on
    as the plugin's ``--corrmom-*`` options). Each implementation's virtualenv
    is reused while nothing it installs has changed.
    """
    args = list(session.posargs)
    impl = _option(args, "impl", "ref")
    backend = _option(args, "backend", "numpy")
    _check_suite_args(session, impl, backend)
    if _needs_missing_gpu(backend):
        session.skip("no CUDA device on this machine")
    venv = _suite_venv(session, impl, backend)
    if not any(a.startswith("--report") for a in args):
        args.append(f"--report=reports/conformance-{impl}-{backend if impl == 'ref' else 'native'}")
    session.run(
        _bin(venv, "python"),
        "-m",
        "pytest",
        "-p",
        "corrmom_conformance.plugin",
        "--pyargs",
        "corrmom_conformance.checks",
        "-p",
        "no:cacheprovider",
        *_pytest_args(args),
        external=True,
    )


@nox.session
@nox.parametrize("numba", [False, True], ids=["numpy", "numba"])
def differential(session: nox.Session, numba: bool) -> None:
    """Differential fuzz: random API sequences in lockstep on real Chainer 7.8.1 and corrmom_ref.

    One interpreter with NumPy 1.26.4, Chainer and the reference; compared
    bitwise after every operation (tests/differential). Two legs: without
    Numba, and with Numba importable (the Numba loop is declared bitwise).
    1000 scenarios per leg by default; ``nox -s differential -- --thorough``
    runs ten times as many. Other arguments go to pytest.
    """
    session.install(*CHAINER_PREREQUISITES)
    session.install("--no-build-isolation", CHAINER)
    session.install("-e", ".", "pytest", "hypothesis", "numpy==1.26.4", *([NUMBA] if numba else []))
    args = list(session.posargs)
    env = {}
    if "--thorough" in args:
        args.remove("--thorough")
        env["CORRMOM_DIFFERENTIAL_THOROUGH"] = "1"
    if numba:  # the planted-bug checks of the harness itself run once, in the other leg
        args.append("--ignore=tests/differential/test_planted_bugs.py")
    session.run("pytest", "tests/differential", "-p", "no:cacheprovider", "-q", "-rs", *args, env=env)


#: The runs of the matrix: (--impl, --backend).
MATRIX = [("ref", b) for b in BACKEND_REQUIREMENTS] + [
    ("chainer", "numpy"),
    ("torch", "numpy"),
    ("optax", "numpy"),
    ("ref-torch", "numpy"),
    ("ref-optax", "numpy"),
]


@nox.session(name="conformance-matrix")
def conformance_matrix(session: nox.Session) -> None:
    """Every implementation that runs here, each in its own virtualenv; writes the combined table for the docs."""
    _takes_no_arguments(session)
    session.install("nox", "numpy", "-e", ".")  # the table is written by corrmom_conformance.matrix
    reports = []
    for impl, backend in MATRIX:
        if _needs_missing_gpu(backend):
            session.log(f"skipping ref on {backend}: no CUDA device")
            continue
        # "-native" keeps --impl=ref-torch apart from --impl=ref --backend=torch
        name = f"{impl}-{backend}" if impl == "ref" else f"{impl}-native"
        report = f"reports/matrix/{name}"
        reports.append(report + ".json")
        # a failing implementation is a result to tabulate, not an error of this session
        session.run(
            "nox",
            "-s",
            "conformance",
            "--",
            f"--impl={impl}",
            f"--backend={backend}",
            f"--report={report}",
            success_codes=[0, 1],
        )
    session.run(
        "python", "-m", "corrmom_conformance.matrix", "docs/_generated/conformance-matrix.md", *reports
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The step benchmark: every implementation side by side, real Chainer in its own virtualenv.

    ``nox -s bench`` (``-- --quick`` for a smoke run). Writes benchmarks/results.{json,png}.
    """
    session.install("-e", ".", "numpy>=2", NUMBA, TORCH, "jax[cpu]>=0.4.30", "optax>=0.2", "matplotlib")
    chainer_venv = Path(session.create_tmp()) / "chainer-venv"
    if not (chainer_venv / "bin" / "python").exists():
        session.run("python", "-m", "venv", str(chainer_venv))
        pip = str(chainer_venv / "bin" / "pip")
        session.run(pip, "install", "-q", *CHAINER_PREREQUISITES, external=True)
        session.run(pip, "install", "-q", "--no-build-isolation", CHAINER, external=True)
    session.run(
        "python",
        "-m",
        "benchmarks",
        "--chainer-python",
        str(chainer_venv / "bin" / "python"),
        *session.posargs,
    )


@nox.session(name="bench-compare")
def bench_compare(session: nox.Session) -> None:
    """Two versions of the library timed interleaved on one implementation and workload.

    ``nox -s bench-compare -- OLD [NEW] --impl "ref on torch" --workload small``, OLD and NEW
    being git revisions or folders (NEW defaults to this tree); prints new / old.
    """
    session.install("-e", ".", "numpy>=2", NUMBA, TORCH, "jax[cpu]>=0.4.30", "optax>=0.2")
    session.run("python", "-m", "benchmarks.compare", *session.posargs)


#: What the documentation build needs besides the library (figures use NumPy).
DOCS_REQUIREMENTS = [
    "sphinx>=8",
    "myst-parser>=4",
    "furo",
    "latex2mathml>=3.77",
    "matplotlib>=3.8",
    "sympy>=1.12",
    "numpy>=2",
    "jax[cpu]>=0.4.30",  # corrmom_ref.optax and its porting examples
    "optax>=0.2",
]
#: docs/porting.md and corrmom_ref.torch's docstrings run PyTorch.
DOCS_REQUIREMENTS.append(TORCH)


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
    # -q: warnings and errors only (no per-page progress, no MyST configuration dump)
    session.run(
        "sphinx-build", "-q", "-E", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )
    pages = sorted(str(page) for page in Path("docs").glob("*.md"))
    # The fast-path kernels import their backend (torch, jax, cupy) at module
    # level and hold no examples; importing them here would need every backend.
    kernels = "--ignore-glob=src/corrmom_ref/_step/kernels/*.py"
    session.run("pytest", "--doctest-glob=*.md", "--doctest-modules", kernels, *pages, "src/corrmom_ref")
    session.run("pytest", "tests/docs", *session.posargs, env={"CORRMOM_DOCS_TESTS": "1"})


#: MPI for the ``distributed`` session, all from PyPI: the ``mpich`` wheel
#: brings libmpi and ``mpiexec`` into the session's virtualenv, so the machine
#: needs no system MPI (mpi4py's wheel loads whichever libmpi it finds first).
MPI_REQUIREMENTS = ["mpich", "mpi4py>=4.0", "array-api-strict>=2.2", TORCH]
#: The engines of the ports' own frameworks (tests/engines): torch.distributed (above) and JAX sharding.
ENGINE_REQUIREMENTS = ["jax[cpu]>=0.4.30", "optax>=0.2"]


@nox.session
def distributed(session: nox.Session) -> None:
    """Data-parallel tests under real MPI: ``mpiexec -n 2`` and ``-n 3`` (and the serial skips);
    then tests/engines: corrmom_ref.torch under DDP and FSDP2 (gloo, 2 and 3 processes) and
    corrmom_ref.optax sharded over 4 CPU devices, each job started by the tests themselves."""
    session.install("-e", ".[test,mpi]", *MPI_REQUIREMENTS, *ENGINE_REQUIREMENTS)
    pytest_args = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/distributed", *session.posargs]
    session.run("python", *pytest_args)
    for ranks in ("2", "3"):
        # MPIEXEC_TIMEOUT (hydra): a deadlocked collective fails the run instead of hanging CI.
        session.run("mpiexec", "-n", ranks, "python", *pytest_args, env={"MPIEXEC_TIMEOUT": "600"})
    engines = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rxX", "tests/engines", *session.posargs]
    session.run("python", *engines, env={"CORRMOM_ENGINE_TESTS": "1"})
