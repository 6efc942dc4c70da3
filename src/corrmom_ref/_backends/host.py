"""NumPy on the host: the exchange format of npz snapshots.

npz is NumPy's file format, so saving and loading go through NumPy whatever
backend the arrays live on. Arrays cross over through DLPack after a move to
the CPU where the backend needs one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_numpy_array, to_device

__all__ = ["load_npz_file", "save_npz_file", "to_numpy"]


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy (or view, for NumPy input) of an array or Python scalar."""
    if isinstance(x, (bool, int, float)) or is_numpy_array(x):
        return np.asarray(x)
    try:
        return np.asarray(x)
    except (TypeError, RuntimeError, ValueError):
        pass  # e.g. CuPy refuses implicit host copies
    host = to_device(x, "cpu")
    try:
        return np.from_dlpack(host)
    except (TypeError, RuntimeError, BufferError):
        return np.asarray(host)


def save_npz_file(file: Any, arrays: dict[str, np.ndarray], compression: bool) -> None:
    """Write ``arrays`` to ``file`` (a path or a binary file object)."""
    if compression:
        np.savez_compressed(file, **arrays)  # type: ignore[arg-type]
    else:
        np.savez(file, **arrays)  # type: ignore[arg-type]


def load_npz_file(file: Any) -> dict[str, np.ndarray]:
    """Read every array of an npz file, refusing pickled (object) arrays.

    Raises:
        ValueError: naming the first key whose array would need unpickling.
    """
    with np.load(file, allow_pickle=False) as npz:
        arrays = {}
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as error:
                raise ValueError(
                    f"snapshot key {key!r} holds a pickled object array; "
                    "corrmom_ref never unpickles snapshot data (it could run code)"
                ) from error
    return arrays


def generator(seed: int | None) -> np.random.Generator:
    """A NumPy random generator (host side) for hooks that need random numbers."""
    return np.random.default_rng(seed)


def normal(rng: np.random.Generator, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal samples with mean 0 and standard deviation ``std``."""
    return rng.normal(0.0, std, shape)
