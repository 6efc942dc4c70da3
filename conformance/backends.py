"""Array backends for adapters that run on the Array API (``--backend``).

Each backend converts host NumPy arrays to its arrays and back. The suite
itself only ever sees NumPy arrays on the host.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "Backend", "load_backend"]

#: Names accepted by ``--backend``.
BACKENDS = ("numpy", "numpy1", "array_api_strict", "torch", "jax", "dask", "cupy")


@dataclass(frozen=True)
class Backend:
    """A loaded backend: its name, version, and host conversions."""

    name: str
    version: str
    to_backend: Callable[[np.ndarray], Any]
    has_float16: bool = True

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        """A NumPy copy of a backend array."""
        if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
            return x.get()
        if hasattr(x, "compute") and type(x).__module__.startswith("dask"):
            x = x.compute()
        try:
            return np.array(x, copy=True)
        except (TypeError, ValueError, RuntimeError):
            return np.from_dlpack(x).copy()


def load_backend(name: str) -> Backend:
    """Import a backend by ``--backend`` name; ``ImportError`` if it is not installed."""
    if name == "numpy":
        return Backend("numpy", np.__version__, lambda a: np.array(a, copy=True))
    if name == "numpy1":
        if int(np.__version__.split(".")[0]) >= 2:
            raise ImportError(f"backend numpy1 needs NumPy 1.x, found {np.__version__}")
        return Backend("numpy1", np.__version__, lambda a: np.array(a, copy=True))
    if name == "array_api_strict":
        xps = importlib.import_module("array_api_strict")
        return Backend(name, xps.__version__, lambda a: xps.asarray(np.array(a, copy=True)), has_float16=False)
    if name == "torch":
        torch = importlib.import_module("torch")
        return Backend(name, torch.__version__, lambda a: torch.asarray(np.array(a, copy=True)))
    if name == "jax":
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)
        jnp = importlib.import_module("jax.numpy")
        return Backend(name, jax.__version__, lambda a: jnp.asarray(a))
    if name == "dask":
        da = importlib.import_module("dask.array")
        dask = importlib.import_module("dask")
        return Backend(name, dask.__version__, lambda a: da.from_array(np.array(a, copy=True)))
    if name == "cupy":
        cp = importlib.import_module("cupy")
        cp.cuda.runtime.getDeviceCount()
        return Backend(name, cp.__version__, lambda a: cp.asarray(a))
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
