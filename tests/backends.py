"""The array backends the unit tests run on, and helpers to move arrays in and out.

Each :class:`Backend` makes *native* arrays (what a user of that library
holds: ``numpy.ndarray``, ``torch.Tensor``, ``jax.Array``, a Dask array, an
array-api-strict array) and converts them back to NumPy for comparison.

``numba`` is NumPy with Numba installed, so that the reference's NumPy fast
path (a compiled loop) runs wherever the generic step would.

``numpy_readonly`` hands out NumPy arrays whose ``writeable`` flag is off, so
any code path that updates in place without rebinding the result fails
loudly (the trick array-api-extra uses).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Every backend name the ``CORRMOM_BACKENDS`` variable may list.
#: ``numpy1`` is NumPy 1.26 (the nox leg installs it); ``numba`` is NumPy with
#: Numba (the NumPy fast path); ``cupy`` needs a GPU.
KNOWN = ("numpy", "numpy1", "numba", "numpy_readonly", "array_api_strict", "torch", "jax", "dask", "cupy")

#: What a default run (no ``CORRMOM_BACKENDS``) tries, in order.
DEFAULT = ("numpy", "numpy_readonly", "array_api_strict", "torch", "jax", "dask", "cupy")


@dataclass
class Backend:
    """One array library as the tests use it."""

    name: str
    module: Any
    #: Whether the backend has a float16 dtype.
    has_float16: bool = True
    #: Whether results are computed by NumPy's own kernels in the same
    #: operation order, so they are bitwise equal to Chainer's on the CPU.
    numpy_kernels: bool = False
    _make: Callable[[Any, Any], Any] | None = None
    _to_numpy: Callable[[Any], np.ndarray] | None = None
    #: A second device of this backend, for device-mismatch tests.
    other_device: Any = None

    def __repr__(self) -> str:
        return self.name

    def dtype(self, name: str) -> Any:
        """The backend's dtype object called ``name`` (``'float32'``)."""
        return getattr(self.module, name, None) or np.dtype(name)

    def asarray(self, values: Any, dtype: str = "float32") -> Any:
        """A native array holding ``values`` (a NumPy array, list or scalar) as ``dtype``."""
        host = np.array(values, dtype=dtype, copy=True)  # never alias the caller's array
        if self._make is not None:
            return self._make(host, self.dtype(dtype))
        return self.module.asarray(host, dtype=self.dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        """A NumPy copy of a native array (or of a NumPy array or list handed in by a test)."""
        if isinstance(x, (np.ndarray, list)):
            return np.array(x, copy=True)
        if self._to_numpy is not None:
            return self._to_numpy(x)
        return np.array(x, copy=True)


def _numpy(name: str) -> Backend:
    return Backend(name, np, numpy_kernels=True, _make=lambda h, d: h.copy())


def _numpy1() -> Backend:
    if not np.__version__.startswith("1."):
        raise ImportError(f"the numpy1 leg needs NumPy 1.x, found {np.__version__}")
    return _numpy("numpy1")


def _numba() -> Backend:
    importlib.import_module("numba")  # the leg is for NumPy's fast path: no Numba, no leg
    return _numpy("numba")


def _numpy_readonly() -> Backend:
    def make(host: np.ndarray, dtype: Any) -> np.ndarray:
        out = host.copy()
        out.flags.writeable = False
        return out

    return Backend("numpy_readonly", np, numpy_kernels=True, _make=make)


def _strict() -> Backend:
    xp = importlib.import_module("array_api_strict")
    return Backend(
        "array_api_strict",
        xp,
        has_float16=False,
        numpy_kernels=True,
        _to_numpy=lambda x: np.from_dlpack(x).copy(),
        other_device=xp.Device("device1"),
    )


def _torch() -> Backend:
    torch = importlib.import_module("torch")
    return Backend(
        "torch",
        torch,
        _make=lambda h, d: torch.asarray(h.copy(), dtype=d),
        _to_numpy=lambda x: x.detach().cpu().numpy().copy(),
        other_device=torch.device("meta"),
    )


def _jax() -> Backend:
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = importlib.import_module("jax.numpy")
    return Backend("jax", jnp, _make=lambda h, d: jnp.asarray(h, dtype=d))


def _dask() -> Backend:
    da = importlib.import_module("dask.array")
    return Backend(
        "dask",
        da,
        numpy_kernels=True,
        _make=lambda h, d: da.from_array(h.copy(), chunks=-1),
        _to_numpy=lambda x: np.array(x.compute(), copy=True),
    )


def _cupy() -> Backend:
    cp = importlib.import_module("cupy")
    if cp.cuda.runtime.getDeviceCount() < 1:  # raises without a driver
        raise ImportError("no CUDA device")
    return Backend("cupy", cp, _to_numpy=lambda x: cp.asnumpy(x))


_FACTORIES: dict[str, Callable[[], Backend]] = {
    "numpy": lambda: _numpy("numpy"),
    "numpy1": _numpy1,
    "numba": _numba,
    "numpy_readonly": _numpy_readonly,
    "array_api_strict": _strict,
    "torch": _torch,
    "jax": _jax,
    "dask": _dask,
    "cupy": _cupy,
}


def requested() -> list[str]:
    """Backend names from ``CORRMOM_BACKENDS`` (NumPy legs bring the read-only variant)."""
    raw = os.environ.get("CORRMOM_BACKENDS", "").strip()
    if not raw:
        return list(DEFAULT)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise ValueError(f"CORRMOM_BACKENDS lists unknown backends {unknown}; known: {KNOWN}")
    if {"numpy", "numpy1", "numba"} & set(names) and "numpy_readonly" not in names:
        names.append("numpy_readonly")
    return names


def load(name: str) -> Backend | str:
    """The backend, or the reason it cannot be used here."""
    try:
        return _FACTORIES[name]()
    except Exception as error:  # ImportError, a CUDA runtime error, ...
        return f"{name} unavailable: {type(error).__name__}: {error}"
