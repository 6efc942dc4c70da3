"""The array backends the unit tests run on, and helpers to move arrays in and out.

The backends themselves (names, how to import each, flags, what each nox leg
installs) are the one registry in :mod:`corrmom_conformance.backends`; this
module turns a registry entry into the object the tests hold.

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

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from corrmom_conformance import backends as registry

#: Every backend name the ``CORRMOM_BACKENDS`` variable may list.
#: ``numpy1`` is NumPy 1.26 (the nox leg installs it); ``numba`` is NumPy with
#: Numba (the NumPy fast path); ``cupy`` needs a GPU.
KNOWN = tuple(registry.REGISTRY)

#: What a default run (no ``CORRMOM_BACKENDS``) tries, in order.
DEFAULT = registry.names(default_tests=True)


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
    _from_numpy: Any = None
    _to_numpy: Any = None
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
        return self._from_numpy(host)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A NumPy copy of a native array (or of a NumPy array or list handed in by a test)."""
        if isinstance(x, (np.ndarray, list)):
            return np.array(x, copy=True)
        return self._to_numpy(x)


def requested() -> list[str]:
    """Backend names from ``CORRMOM_BACKENDS`` (NumPy legs bring the read-only variant)."""
    raw = os.environ.get("CORRMOM_BACKENDS", "").strip()
    if not raw:
        return list(DEFAULT)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise ValueError(f"CORRMOM_BACKENDS lists unknown backends {unknown}; known: {KNOWN}")
    numpy_legs = set(registry.names(numpy_arrays=True, readonly_numpy=False))
    readonly = registry.names(readonly_numpy=True)
    if numpy_legs & set(names) and not set(readonly) & set(names):
        names.extend(readonly)
    return names


def load(name: str) -> Backend | str:
    """The backend, or the reason it cannot be used here."""
    try:
        loaded = registry.load(name)
    except Exception as error:  # ImportError, a CUDA runtime error, ...
        return f"{name} unavailable: {type(error).__name__}: {error}"
    spec = loaded.spec
    return Backend(
        name,
        loaded.module,
        has_float16=spec.has_float16,
        numpy_kernels=spec.numpy_kernels,
        _from_numpy=loaded.from_numpy,
        _to_numpy=loaded.to_numpy,
        other_device=loaded.other_device,
    )
