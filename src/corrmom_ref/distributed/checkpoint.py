"""Snapshots of data-parallel training: written by rank 0, read on any number of ranks.

All ranks hold the same parameters and optimizer state, so rank 0's snapshot
is the snapshot. It has the keys of a single-process snapshot (the
:class:`~corrmom_ref.distributed.MultiNodeOptimizer` serializes the wrapped
optimizer), so it resumes on any number of ranks, or on one process without
MPI. Loading reads the file on rank 0 and broadcasts its bytes, so the other
ranks need no shared file system.
"""

from __future__ import annotations

from typing import Any

from corrmom_ref import serializers
from corrmom_ref.distributed.communicator import MpiCommunicator

__all__ = ["load_npz", "save_npz"]


def save_npz(communicator: MpiCommunicator, file: Any, obj: Any, compression: bool = True) -> None:
    """Rank 0 writes ``obj`` to ``file``; every rank returns once it is written."""
    if communicator.rank == 0:
        serializers.save_npz(file, obj, compression=compression)
    communicator.barrier()


def load_npz(communicator: MpiCommunicator, file: Any, obj: Any, **kwargs: Any) -> None:
    """Every rank loads ``obj`` from ``file`` as read by rank 0.

    ``kwargs`` go to :func:`corrmom_ref.serializers.load_npz` (``path``,
    ``strict``, ``ignore_names``).
    """
    serializers.load_npz(communicator.bcast_file(file), obj, **kwargs)
