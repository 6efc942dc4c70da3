"""The one registry of array backends: the unit tests, the suite and the nox sessions read it.

Each :class:`BackendSpec` says what a backend is (the module its namespace
comes from, how arrays move in from and out to NumPy) and its flags;
:func:`load` imports the library and returns a :class:`LoadedBackend`.
What each nox leg installs is the noxfile's (``BACKEND_REQUIREMENTS``), not
this shipped module's. Readers:

* ``tests/backends.py``: the ``bk`` fixture of the unit tests
  (``CORRMOM_BACKENDS`` lists names from :data:`REGISTRY`);
* :mod:`corrmom_conformance.adapters.reference`: ``--corrmom-backend``
  (the backends with ``suite=True``);
* ``noxfile.py``: ``needs_gpu``, to skip the legs a machine cannot run. nox
  loads this file by its path, so the module imports nothing at module level
  but the standard library, and nothing from the suite.

What stays true: names are unique; an unknown name is rejected with the list
of valid ones; importing this module never imports an array library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoadedBackend:
    """An imported backend: its namespace module and the two conversions.

    Attributes:
        spec: The registry entry.
        module: The namespace arrays are made with (``numpy``, ``torch``, ``jax.numpy``, ...).
        label: Name shown in reports (NumPy's carries its version, so the
            numpy and numpy1 legs differ in the conformance matrix).
        from_numpy: A native array holding a copy of a NumPy array, same dtype
            (never aliasing it).
        to_numpy: A NumPy copy of a native array.
        other_device: A second device of this backend, for device-mismatch tests (``None``: none).
    """

    spec: BackendSpec
    module: Any
    label: str
    from_numpy: Callable[[Any], Any]
    to_numpy: Callable[[Any], Any]
    other_device: Any = None


@dataclass(frozen=True)
class BackendSpec:
    """One array backend, as every reader of the registry sees it.

    Attributes:
        name: The name in ``CORRMOM_BACKENDS``, ``--corrmom-backend`` and the nox legs.
        has_float16: Whether the backend has a float16 dtype.
        numpy_arrays: Whether its native arrays are ``numpy.ndarray`` (the NumPy legs).
        numpy_kernels: Whether results come from NumPy's own kernels in the same
            operation order (bitwise equal to Chainer's on the CPU).
        writeable: Whether its arrays can be written in place.
        readonly_numpy: NumPy arrays whose ``writeable`` flag is off (array-api-extra's
            ``NUMPY_READONLY``): code that writes without rebinding fails loudly.
        lazy: Whether results are computed only when asked for (Dask).
        needs_x64: Whether loading turns on 64-bit floats (JAX's ``jax_enable_x64``).
        needs_gpu: Whether it runs only with a CUDA device.
        suite: Whether the conformance suite's reference adapter takes it (``--corrmom-backend``).
        default_tests: Whether a unit-test run without ``CORRMOM_BACKENDS`` tries it.
        load: Imports the library and returns the :class:`LoadedBackend`
            (raises ``ImportError`` naming why it cannot run here).
    """

    name: str
    load: Callable[[BackendSpec], LoadedBackend] = field(repr=False, compare=False)
    has_float16: bool = True
    numpy_arrays: bool = False
    numpy_kernels: bool = False
    writeable: bool = True
    readonly_numpy: bool = False
    lazy: bool = False
    needs_x64: bool = False
    needs_gpu: bool = False
    suite: bool = True
    default_tests: bool = True


def _copy(np: Any) -> Callable[[Any], Any]:
    return lambda a: np.array(a, copy=True)


def _numpy(spec: BackendSpec) -> LoadedBackend:
    np = importlib.import_module("numpy")
    return LoadedBackend(spec, np, f"numpy {np.__version__}", _copy(np), _copy(np))


def _numpy1(spec: BackendSpec) -> LoadedBackend:
    """NumPy, insisting on a 1.x release (value-based casting), so the label cannot lie."""
    np = importlib.import_module("numpy")
    if not np.__version__.startswith("1."):
        raise ImportError(f"the numpy1 backend needs NumPy 1.x; this environment has NumPy {np.__version__}")
    return LoadedBackend(spec, np, "numpy1", _copy(np), _copy(np))


def _numba(spec: BackendSpec) -> LoadedBackend:
    """NumPy with Numba importable: the reference's NumPy fast path (a compiled loop) runs."""
    np = importlib.import_module("numpy")
    numba = importlib.import_module("numba")  # the leg is for NumPy's fast path: no Numba, no leg
    label = f"numpy {np.__version__} + numba {numba.__version__}"
    return LoadedBackend(spec, np, label, _copy(np), _copy(np))


def _numpy_readonly(spec: BackendSpec) -> LoadedBackend:
    np = importlib.import_module("numpy")

    def frozen(a: Any) -> Any:
        out = np.array(a, copy=True)
        out.flags.writeable = False
        return out

    return LoadedBackend(spec, np, "numpy_readonly", frozen, _copy(np))


def _strict(spec: BackendSpec) -> LoadedBackend:
    np = importlib.import_module("numpy")
    xp = importlib.import_module("array_api_strict")
    return LoadedBackend(
        spec,
        xp,
        "array_api_strict",
        lambda a: xp.asarray(np.array(a, copy=True)),
        lambda x: np.from_dlpack(x).copy(),
        other_device=xp.Device("device1"),
    )


def _torch(spec: BackendSpec) -> LoadedBackend:
    np = importlib.import_module("numpy")
    torch = importlib.import_module("torch")
    return LoadedBackend(
        spec,
        torch,
        "torch",
        lambda a: torch.from_numpy(np.array(a, copy=True)),
        lambda x: x.detach().cpu().numpy().copy(),
        other_device=torch.device("meta"),
    )


def _jax(spec: BackendSpec) -> LoadedBackend:
    np = importlib.import_module("numpy")
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = importlib.import_module("jax.numpy")
    return LoadedBackend(spec, jnp, "jax", lambda a: jnp.asarray(np.asarray(a)), _copy(np))


def _dask(spec: BackendSpec) -> LoadedBackend:
    np = importlib.import_module("numpy")
    da = importlib.import_module("dask.array")
    return LoadedBackend(
        spec,
        da,
        "dask",
        lambda a: da.from_array(np.array(a, copy=True), chunks=-1),
        lambda x: np.array(x.compute(), copy=True),
    )


def _cupy(spec: BackendSpec) -> LoadedBackend:
    cp = importlib.import_module("cupy")
    try:
        devices = cp.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver
        raise ImportError(f"no CUDA device: {error}") from error
    if devices < 1:
        raise ImportError("no CUDA device")
    return LoadedBackend(spec, cp, "cupy", cp.asarray, cp.asnumpy)


#: Every backend, in the order a default test run takes them (the nox legs take the same order).
BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("numpy", _numpy, numpy_arrays=True, numpy_kernels=True),
    BackendSpec("numpy1", _numpy1, numpy_arrays=True, numpy_kernels=True, default_tests=False),
    BackendSpec("numba", _numba, numpy_arrays=True, numpy_kernels=True, default_tests=False),
    BackendSpec(
        "numpy_readonly",
        _numpy_readonly,
        numpy_arrays=True,
        numpy_kernels=True,
        writeable=False,
        readonly_numpy=True,
        suite=False,
    ),
    BackendSpec("array_api_strict", _strict, has_float16=False, numpy_kernels=True),
    BackendSpec("torch", _torch),
    BackendSpec("jax", _jax, writeable=False, needs_x64=True),
    BackendSpec("dask", _dask, numpy_kernels=True, lazy=True),
    BackendSpec("cupy", _cupy, needs_gpu=True),
)

#: The backends by name.
REGISTRY: dict[str, BackendSpec] = {spec.name: spec for spec in BACKENDS}


def names(**flags: bool) -> tuple[str, ...]:
    """The names of the backends whose flags have the given values (``names(suite=True)``), in registry order."""
    for flag in flags:
        if flag not in BackendSpec.__dataclass_fields__ or flag in ("name", "load"):
            raise TypeError(f"BackendSpec has no flag {flag!r}")
    return tuple(s.name for s in BACKENDS if all(getattr(s, k) == v for k, v in flags.items()))


def spec(name: str, *, valid: tuple[str, ...] | None = None) -> BackendSpec:
    """The registry entry called ``name``; ``ValueError`` listing the valid names otherwise.

    ``valid`` narrows the accepted names (the suite accepts ``names(suite=True)``).
    """
    allowed = tuple(REGISTRY) if valid is None else valid
    if name not in allowed:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(allowed)}")
    return REGISTRY[name]


def load(name: str) -> LoadedBackend:
    """Import backend ``name`` (``ValueError`` for an unknown name; ``ImportError`` if it cannot run here)."""
    entry = spec(name)
    return entry.load(entry)


@dataclass(frozen=True)
class Backend:
    """How the suite's reference adapter moves arrays between NumPy and one array library."""

    name: str
    to_native: Callable[[Any], Any]
    to_numpy: Callable[[Any], Any]
    has_float16: bool = True


#: The backends ``--corrmom-backend`` accepts.
SUITE_BACKENDS = names(suite=True)


def get_backend(name: str) -> Backend:
    """The suite's view of backend ``name`` (``ValueError`` for an unknown name; import errors propagate)."""
    loaded = spec(name, valid=SUITE_BACKENDS).load(REGISTRY[name])
    return Backend(loaded.label, loaded.from_numpy, loaded.to_numpy, loaded.spec.has_float16)
