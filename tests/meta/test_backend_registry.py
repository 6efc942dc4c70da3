"""The one backend registry (corrmom_conformance.backends): every list of backends reads it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import backends
import pytest

from corrmom_conformance import backends as registry

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the registry's tests run once, in the NumPy leg",
)


def _ci_backends() -> set[str]:
    """Every backend a job of the CI workflow names (``backend: [...]`` and ``backend='...'``)."""
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    names = set()
    for listed in re.findall(r"^\s*backend:\s*\[([^\]]*)\]", text, re.M):
        names |= {n.strip() for n in listed.split(",") if n.strip()}
    names |= set(re.findall(r"^\s*backend:\s*(\w+)\s*$", text, re.M))
    names |= set(re.findall(r"backend='(\w+)'", text))
    return names


def test_names_are_unique():
    names = [spec.name for spec in registry.BACKENDS]
    assert len(names) == len(set(names)), names
    assert list(registry.REGISTRY) == names


def test_every_ci_leg_is_a_registered_backend_with_a_nox_leg():
    pytest.importorskip("nox")
    from test_noxfile import _load_noxfile

    legs = _load_noxfile().BACKEND_REQUIREMENTS
    ci = _ci_backends()
    assert {"numpy", "torch", "cupy"} <= ci  # the parser found the jobs
    for name in ci:
        assert name in registry.REGISTRY, f"CI runs backend {name!r}, which the registry lacks"
        assert legs.get(name), f"CI runs {name!r}, which has no nox leg"


def test_the_unit_tests_read_the_registry():
    assert tuple(registry.REGISTRY) == backends.KNOWN
    assert set(backends.DEFAULT) <= set(backends.KNOWN)
    assert "numpy_readonly" in backends.DEFAULT and "numpy1" not in backends.DEFAULT


def test_nox_legs_are_the_registry_backends_in_its_order():
    pytest.importorskip("nox")
    from test_noxfile import _load_noxfile

    legs = list(_load_noxfile().BACKEND_REQUIREMENTS)
    # every backend but numpy_readonly, which rides along with the NumPy legs
    assert legs == [name for name in registry.REGISTRY if name != "numpy_readonly"]


def test_the_shipped_registry_names_no_install_pins():
    """What CI installs is the noxfile's: the registry a third party installs pins nothing."""
    text = (ROOT / "src" / "corrmom_conformance" / "backends.py").read_text(encoding="utf-8")
    assert not re.search(r"[\w\]-]+(==|>=|<=|~=)\d", text), re.findall(r"\S+(?:==|>=)\S+", text)


def test_the_suite_takes_the_registry_backends_it_can_run():
    assert tuple(s.name for s in registry.BACKENDS if s.suite) == registry.SUITE_BACKENDS
    assert "numpy_readonly" not in registry.SUITE_BACKENDS
    assert {"numpy", "numpy1", "numba", "torch", "jax", "dask", "cupy"} <= set(registry.SUITE_BACKENDS)


def test_an_unknown_name_is_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'nonsense'; valid: ") as error:
        registry.load("nonsense")
    for name in registry.REGISTRY:
        assert name in str(error.value)
    with pytest.raises(ValueError, match="'numpy_readonly'") as error:
        registry.get_backend("numpy_readonly")
    assert str(error.value).endswith(", ".join(registry.SUITE_BACKENDS))


def test_an_unknown_flag_is_rejected():
    with pytest.raises(TypeError, match="no flag 'writable'"):
        registry.names(writable=True)


def test_unknown_names_in_the_environment_are_rejected(monkeypatch):
    monkeypatch.setenv("CORRMOM_BACKENDS", "numpy,nonsense")
    with pytest.raises(ValueError, match=r"unknown backends \['nonsense'\]"):
        backends.requested()


def test_numpy_legs_bring_the_readonly_variant(monkeypatch):
    for leg in ("numpy", "numpy1", "numba"):
        monkeypatch.setenv("CORRMOM_BACKENDS", leg)
        assert backends.requested() == [leg, "numpy_readonly"]
    monkeypatch.setenv("CORRMOM_BACKENDS", "torch")
    assert backends.requested() == ["torch"]


def test_the_readonly_backend_hands_out_readonly_arrays():
    bk = backends.load("numpy_readonly")
    assert not isinstance(bk, str), bk
    assert not bk.asarray([1.0, 2.0]).flags.writeable


def test_loading_the_registry_by_path_imports_no_array_library():
    """nox loads the file by its path: it must need only the standard library."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(ROOT / 'src' / 'corrmom_conformance' / 'backends.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['r'] = m; spec.loader.exec_module(m)\n"
        "heavy = {'numpy', 'torch', 'jax', 'dask', 'cupy', 'array_api_strict', 'numba'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert 'corrmom_conformance' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
