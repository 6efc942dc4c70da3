"""The packages under ``src/`` import without a cycle, and corrmom_ref only as ``docs/architecture.md`` allows.

The graph is read from the source (``ast``), not from ``sys.modules``: an
edge ``a -> b`` for every ``import`` in ``a`` that names a module ``b`` of the
package, at module level or inside a function (an import moved into a function
to dodge a cycle still counts); imports under ``if TYPE_CHECKING:`` are left
out, since they never run. ``from package import name`` is an edge to the
submodule ``package.name`` when there is one, else to the package itself.
Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those
implicit edges are left out, as every subpackage's ``__init__`` imports its own
modules and would otherwise close a loop with each of them.

The layers (:func:`layer_of`) and what each may import (:data:`MAY_IMPORT`)
are those of ``docs/architecture.md``; :func:`forbidden_edges` lists every
edge that breaks them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "corrmom_ref"


def modules(source: Path = SOURCE, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """``{dotted module name: (file, is a package)}`` for every module of ``package``."""
    found = {}
    for path in sorted((source / package).rglob("*.py")):
        parts = list(path.relative_to(source).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` at any depth, except in ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports_of_statement(other)
            continue
        yield from _imports_of_statement(child)


def _imports_of_statement(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _resolve(name: str, known: dict[str, tuple[Path, bool]]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package, if any."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def edges_of(module: str, known: dict[str, tuple[Path, bool]]) -> set[str]:
    """The package's modules that ``module`` imports."""
    path, is_package = known[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        for name in names:
            target = _resolve(name, known)
            if target is None:
                continue
            targets.add(target)
            parts = target.split(".")
            for end in range(1, len(parts)):  # the packages on the way, unless they hold ``module``
                package = ".".join(parts[:end])
                if not module.startswith(package + "."):
                    targets.add(package)
    targets.discard(module)
    return targets


def import_graph(source: Path = SOURCE, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the whole package."""
    known = modules(source, package)
    return {module: edges_of(module, known) for module in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        state[start] = 1
        stack = [iter(sorted(graph[start]))]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if not state.get(target):
                state[target] = 1
                path.append(target)
                stack.append(iter(sorted(graph.get(target, ()))))
    return None


#: Modules every layer may import: they import nothing of the package but each other.
SHARED = frozenset({"_namespace", "_finite", "_validation", "_scalar_checks", "_hooks"})
#: The layers by their top-level name under ``corrmom_ref``; any other top-level name is Chainer's API.
LAYERS = {"_step": "step", "torch": "torch port", "optax": "optax port", "distributed": "distributed"}
#: What each layer may import besides itself (``docs/architecture.md``).
MAY_IMPORT = {
    "shared": frozenset(),
    "step": frozenset({"shared"}),
    "api": frozenset({"shared", "step"}),
    "torch port": frozenset({"shared", "step", "api"}),
    "optax port": frozenset({"shared", "step", "api"}),
    "distributed": frozenset({"shared", "step", "api"}),
}
#: The native kernels, imported inside the step by the policy alone (it chooses among them),
#: and outside it only by the port of their own framework (which shares the kernel's call).
KERNELS = PACKAGE + "._step.kernels"
KERNEL_IMPORTERS = {PACKAGE + "._step.policy": "", PACKAGE + ".torch": KERNELS + ".torch"}


def layer_of(module: str) -> str:
    """The layer of one of the package's modules (the package itself is Chainer's API: it re-exports it)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    top = parts[1]
    if top in SHARED:
        return "shared"
    return LAYERS.get(top, "api")


def forbidden_edges(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
    """Every import ``a -> b`` that ``docs/architecture.md`` does not allow, as ``"a -> b (why)"``."""
    kernels = package + "._step.kernels"
    bad = []
    for module in sorted(graph):
        here = layer_of(module)
        for target in sorted(graph[module]):
            there = layer_of(target)
            if there != here and there not in MAY_IMPORT[here]:
                bad.append(f"{module} -> {target} ({here} may not import {there})")
            if here == "shared" and there == "shared" and target != package + "._namespace":
                bad.append(f"{module} -> {target} (a shared module imports only _namespace)")
            if target.startswith(kernels + ".") and not module.startswith(kernels):
                allowed = [
                    importer
                    for importer, kernel in KERNEL_IMPORTERS.items()
                    if module.startswith(importer) and target.startswith(kernel)
                ]
                if not allowed:
                    bad.append(
                        f"{module} -> {target} (only the policy, or its framework's port, imports a kernel)"
                    )
    return bad


@pytest.mark.parametrize("package", [PACKAGE, "corrmom_conformance"])
def test_the_package_imports_without_a_cycle(package: str) -> None:
    graph = import_graph(SOURCE, package)
    assert graph, f"no modules found in {SOURCE / package}"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A small package ``p`` whose ``a`` imports ``b`` at module level and ``b`` imports ``a`` in a function."""
    package = tmp_path / "p"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from p import a\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from p.sub import b\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from p import c\n"
        "def f():\n    from .. import a\n    return a\n"
    )
    (package / "c.py").write_text("from p.sub import b\n")
    return tmp_path


def test_a_function_level_cycle_is_found(planted: Path) -> None:
    graph = import_graph(planted, "p")
    assert graph["p.a"] == {"p.sub", "p.sub.b"}  # importing p.sub.b runs p/sub/__init__ too
    assert graph["p.sub.b"] == {"p.a"}  # the TYPE_CHECKING import of p.c is left out
    assert find_cycle(graph) == ["p.a", "p.sub.b", "p.a"]


def test_a_type_checking_only_loop_is_no_cycle(planted: Path) -> None:
    (planted / "p" / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import a, c\n"
    )
    assert find_cycle(import_graph(planted, "p")) is None


def test_every_import_is_one_the_architecture_allows() -> None:
    assert forbidden_edges(import_graph()) == []


def test_every_layer_has_modules() -> None:
    """The rules name real packages: a renamed layer would otherwise make its rules vacuous."""
    layers = {layer_of(module) for module in modules()}
    assert layers == set(MAY_IMPORT)


def test_a_forbidden_import_is_named_with_the_rule_it_breaks() -> None:
    graph = {
        "corrmom_ref._step.reference": {"corrmom_ref.optimizer"},
        "corrmom_ref.optimizer": {"corrmom_ref.torch"},
        "corrmom_ref.optax._momentum": {"corrmom_ref._step.kernels.jax", "corrmom_ref._step.reference"},
        "corrmom_ref._finite": {"corrmom_ref._hooks", "corrmom_ref._namespace"},
        "corrmom_ref.torch._steps": {"corrmom_ref._step.kernels.torch"},
        "corrmom_ref._step.policy": {"corrmom_ref._step.kernels.numba"},
    }
    assert forbidden_edges(graph) == [
        "corrmom_ref._finite -> corrmom_ref._hooks (a shared module imports only _namespace)",
        "corrmom_ref._step.reference -> corrmom_ref.optimizer (step may not import api)",
        "corrmom_ref.optax._momentum -> corrmom_ref._step.kernels.jax "
        "(only the policy, or its framework's port, imports a kernel)",
        "corrmom_ref.optimizer -> corrmom_ref.torch (api may not import torch port)",
    ]
