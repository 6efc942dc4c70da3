"""Arrays to MPI buffers and back, for :mod:`corrmom_ref.distributed`.

mpi4py reads and writes memory through the buffer protocol (host arrays:
NumPy, and anything NumPy can view through DLPack) or through
``__cuda_array_interface__`` / DLPack on the device (CuPy with a CUDA-aware
MPI). Flat buffers are built by the caller with the Array API; this module
only decides how MPI sees them:

* NumPy and CuPy arrays are handed to MPI as they are (zero copy; CuPy's
  current stream is synchronised first, since MPI reads device memory
  outside of it);
* other backends (PyTorch, JAX, array-api-strict, Dask) go through a NumPy
  copy on the host and are converted back with the backend's own
  ``asarray`` on the original device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import device, is_cupy_array, is_numpy_array

from corrmom_ref._namespace import namespace_of
from corrmom_ref.serializers._host import to_numpy

__all__ = ["allreduce_sum", "bcast"]

#: Completes a non-blocking MPI request (e.g. :meth:`corrmom_ref.distributed.failfast.ExitWatch.wait`).
Wait = Callable[[Any], None]


def _is_direct(x: Any) -> bool:
    return is_numpy_array(x) or is_cupy_array(x)


def _synchronize(x: Any) -> None:
    if is_cupy_array(x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def _back(host: np.ndarray, like: Any) -> Any:
    xp = namespace_of(like)
    return xp.asarray(host, device=device(like))


def _complete(request: Any, wait: Wait | None) -> None:
    if wait is None:
        request.Wait()
    else:
        wait(request)


def allreduce_sum(mpi_comm: Any, flat: Any, wait: Wait | None = None) -> Any:
    """The elementwise sum of ``flat`` over all ranks, computed in ``flat``'s memory.

    ``flat`` must be the caller's own scratch buffer (a packed bucket): one
    ``MPI_Iallreduce`` with ``MPI_IN_PLACE`` writes the sum into it, which
    saves allocating (and page-faulting) a second buffer of the same size
    every step. Returns the sum, an array of ``flat``'s backend (``flat``
    itself for NumPy and CuPy). With a fixed number of ranks MPI's reduction
    order is fixed, so every rank receives the same bits. The collective is
    non-blocking, completed by ``wait(request)`` (default: ``request.Wait()``).
    """
    from mpi4py import MPI

    if _is_direct(flat):
        _synchronize(flat)
        _complete(mpi_comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM), wait)
        return flat
    host = np.array(to_numpy(flat), copy=True)
    _complete(mpi_comm.Iallreduce(MPI.IN_PLACE, host, op=MPI.SUM), wait)
    return _back(host, flat)


def bcast(mpi_comm: Any, flat: Any, root: int = 0, wait: Wait | None = None) -> Any:
    """``root``'s ``flat`` on every rank (a new array, same backend); one ``MPI_Ibcast``, completed by ``wait``."""
    if _is_direct(flat):
        out = namespace_of(flat).asarray(flat, copy=True)
        _synchronize(out)
        _complete(mpi_comm.Ibcast(out, root=root), wait)
        return out
    host = np.array(to_numpy(flat), copy=True)
    _complete(mpi_comm.Ibcast(host, root=root), wait)
    return _back(host, flat)
