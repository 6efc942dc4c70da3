"""NumPy on the host: the exchange format of npz snapshots.

npz is NumPy's file format, so saving and loading go through NumPy whatever
backend the arrays live on (the files themselves are read and written by
``corrmom_ref.serializers._archive``). Arrays cross over through DLPack after
a move to the CPU where the backend needs one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_numpy_array, to_device

__all__ = ["to_numpy"]


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
