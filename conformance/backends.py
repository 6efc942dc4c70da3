"""Array backends the reference adapter can run on: NumPy in, native arrays out."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Backend:
    """How to move arrays between NumPy and one array library."""

    name: str
    to_native: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    has_float16: bool = True


def _numpy() -> Backend:
    # the version in the name tells the numpy and numpy1 legs apart in the matrix
    return Backend(
        f"numpy {np.__version__}", lambda a: np.array(a, copy=True), lambda x: np.array(x, copy=True)
    )


def _numpy1() -> Backend:
    """NumPy, insisting on a 1.x release (value-based casting), so the label cannot lie."""
    if not np.__version__.startswith("1."):
        raise RuntimeError(f"--backend=numpy1 needs NumPy 1.x; this environment has NumPy {np.__version__}")
    return replace(_numpy(), name="numpy1")


def _numba() -> Backend:
    """NumPy with Numba installed: the reference's NumPy fast path (a compiled loop) runs."""
    numba = importlib.import_module("numba")
    return replace(_numpy(), name=f"numpy {np.__version__} + numba {numba.__version__}")


def _strict() -> Backend:
    xs = importlib.import_module("array_api_strict")
    return Backend(
        "array_api_strict", lambda a: xs.asarray(np.array(a, copy=True)), lambda x: np.array(x), False
    )


def _torch() -> Backend:
    torch = importlib.import_module("torch")
    return Backend(
        "torch", lambda a: torch.from_numpy(np.array(a, copy=True)), lambda x: x.detach().cpu().numpy().copy()
    )


def _jax() -> Backend:
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = importlib.import_module("jax.numpy")
    return Backend("jax", lambda a: jnp.asarray(a), lambda x: np.array(x))


def _dask() -> Backend:
    da = importlib.import_module("dask.array")
    return Backend("dask", lambda a: da.from_array(np.array(a, copy=True)), lambda x: np.array(x.compute()))


def _cupy() -> Backend:
    if shutil.which("nvidia-smi") is None:
        raise RuntimeError("no CUDA device on this machine")
    cp = importlib.import_module("cupy")
    return Backend("cupy", cp.asarray, cp.asnumpy)


_FACTORIES: dict[str, Callable[[], Backend]] = {
    "numpy": _numpy,
    "numpy1": _numpy1,
    "numba": _numba,
    "array_api_strict": _strict,
    "torch": _torch,
    "jax": _jax,
    "dask": _dask,
    "cupy": _cupy,
}

BACKENDS = tuple(_FACTORIES)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``ValueError`` for an unknown name; import errors propagate)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
    return factory()
