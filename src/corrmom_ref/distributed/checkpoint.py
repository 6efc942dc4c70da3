"""Snapshots of data-parallel training: written by rank 0, read on any number of ranks.

All ranks hold the same parameters and optimizer state, so rank 0's snapshot
is the snapshot. It has the keys of a single-process snapshot (the
:class:`~corrmom_ref.distributed.MultiNodeOptimizer` serializes the wrapped
optimizer), so it resumes on any number of ranks, or on one process without
MPI. Loading reads the file on rank 0 and broadcasts its bytes, so the other
ranks need no shared file system.

A failure is collective: if rank 0 cannot write or read the file, or any
rank cannot load the bytes into its object, every rank raises (the rank that
failed its own error, the others a :class:`RuntimeError` naming that rank and
its message). So no rank waits for one that gave up, and a rank that catches
the error and goes on finds the others doing the same, or ending the job
through the excepthook of :mod:`corrmom_ref.distributed.failfast`.
"""

from __future__ import annotations

from typing import Any

from corrmom_ref import serializers
from corrmom_ref.distributed.communicator import MpiCommunicator

__all__ = ["load_npz", "save_npz"]


def save_npz(communicator: MpiCommunicator, file: Any, obj: Any, compression: bool = True) -> None:
    """Rank 0 writes ``obj`` to ``file``; every rank returns once it is written.

    Raises:
        RuntimeError: On ranks other than 0, if rank 0 failed to write (rank 0
            raises its own error).
    """
    error, outcome = None, None
    if communicator.rank == 0:
        try:
            serializers.save_npz(file, obj, compression=compression)
            outcome = b""
        except Exception as exc:
            error = exc
            outcome = f"{type(exc).__name__}: {exc}".encode()
    message = communicator.bcast_bytes(outcome, what="save_npz(), for rank 0 to write the snapshot").decode()
    if error is not None:
        raise error
    if message:
        raise RuntimeError(f"rank 0 could not write the snapshot {file!r}: {message}")


def load_npz(communicator: MpiCommunicator, file: Any, obj: Any, **kwargs: Any) -> None:
    """Every rank loads ``obj`` from ``file`` as read by rank 0.

    ``kwargs`` go to :func:`corrmom_ref.serializers.load_npz` (``path``,
    ``strict``, ``ignore_names``). Each rank's load is all-or-nothing
    (:func:`corrmom_ref.serializers.load_npz`); if it fails on some ranks
    only, the ranks that succeeded keep the loaded values and raise too.

    Raises:
        RuntimeError: On every rank whose own load did not fail, if rank 0
            could not read ``file`` or another rank could not load it
            (naming the ranks and their messages).
    """
    data = communicator.bcast_file(file)
    error, outcome = None, b""
    try:
        serializers.load_npz(data, obj, **kwargs)
    except Exception as exc:
        error = exc
        outcome = f"{type(exc).__name__}: {exc}".encode()
    outcomes = communicator.allgather_bytes(outcome, what="load_npz(), for every rank to load the snapshot")
    if error is not None:
        raise error
    failed = [(rank, message.decode()) for rank, message in enumerate(outcomes) if message]
    if failed:
        listed = "; ".join(f"rank {rank}: {message}" for rank, message in failed)
        raise RuntimeError(f"the snapshot {file!r} did not load on every rank ({listed})")
