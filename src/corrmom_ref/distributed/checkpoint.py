"""Snapshots of data-parallel training: written by rank 0, read on any number of ranks.

All ranks hold the same parameters and optimizer state, so rank 0's snapshot
is the snapshot. It has the keys of a single-process snapshot (the
:class:`~corrmom_ref.distributed.MultiNodeOptimizer` serializes the wrapped
optimizer), so it resumes on any number of ranks, or on one process without
MPI. Loading reads the file on rank 0 only, so the other ranks need no
shared file system: rank 0 loads its object as
:func:`corrmom_ref.serializers.load_npz` does (only the members the object
asks for are read, each checked from its header first), then broadcasts
those members alone, as a small npz archive written straight into the
broadcast buffer; the other ranks load their objects from it. What travels,
and what each rank holds beyond its object, is the members loaded, however
much else the file holds; the file itself is never copied whole.

A failure is collective: if rank 0 cannot write or read the file, or any
rank cannot load the bytes into its object, every rank raises (the rank that
failed its own error, the others a :class:`RuntimeError` naming that rank and
its message). So no rank waits for one that gave up, and a rank that catches
the error and goes on finds the others doing the same, or ending the job
through the excepthook of :mod:`corrmom_ref.distributed.failfast`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, cast

from corrmom_ref import serializers
from corrmom_ref.distributed.communicator import MpiCommunicator
from corrmom_ref.serializers._errors import SnapshotError, reading
from corrmom_ref.serializers.npz import NpzDeserializer

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


class _Asked(Mapping[str, Any]):
    """An npz archive that remembers which keys were read from it (in order)."""

    def __init__(self, archive: Mapping[str, Any]) -> None:
        self.archive = archive
        self.asked: dict[str, None] = {}

    def __getitem__(self, key: str) -> Any:
        value = self.archive[key]
        self.asked[key] = None
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.archive

    def __iter__(self) -> Iterator[str]:
        return iter(self.archive)

    def __len__(self) -> int:
        return len(self.archive)


class _MemoryFile(io.RawIOBase):
    """A read-only, seekable file over a memoryview, without copying it (``io.BytesIO`` would)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._at))
        buffer[:count] = self._view[self._at : self._at + count]
        self._at += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at


#: First byte of the broadcast: the members follow; rank 0 failed (its message follows), with a
#: snapshot error or with another one.
_LOADED, _SNAPSHOT_FAILED, _FAILED = 0, 1, 2


def _load_on_root(file: Any, obj: Any, deserializer: NpzDeserializer) -> tuple[Exception | None, io.BytesIO]:
    """Rank 0's load, and what it broadcasts: a status byte, then the members its load read
    (an npz archive) or its error message."""
    from corrmom_ref.serializers._archive import NpzArchive

    out = io.BytesIO()
    out.write(bytes([_LOADED]))
    try:
        with NpzArchive(file) as archive, reading(archive.name):
            asked = _Asked(archive)
            deserializer.npz = asked
            deserializer.load(obj)
            archive.write_members(asked.asked, out)
    except Exception as error:
        out = io.BytesIO()
        out.write(bytes([_SNAPSHOT_FAILED if isinstance(error, SnapshotError) else _FAILED]))
        out.write(f"{type(error).__name__}: {error}".encode())
        return error, out
    return None, out


def load_npz(communicator: MpiCommunicator, file: Any, obj: Any, **kwargs: Any) -> None:
    """Every rank loads ``obj`` from ``file`` as read by rank 0.

    ``kwargs`` go to :func:`corrmom_ref.serializers.load_npz` (``path``,
    ``strict``, ``ignore_names``). Each rank's load is all-or-nothing
    (:func:`corrmom_ref.serializers.load_npz`); if it fails on some ranks
    only, the ranks that succeeded keep the loaded values and raise too.
    Only the members rank 0's ``obj`` asks for are broadcast (see the module
    docstring).

    Raises:
        SnapshotError: On rank 0, as :func:`corrmom_ref.serializers.load_npz`;
            on the other ranks, if rank 0's load raised one (naming rank 0 and
            its message), or their own load of the members failed.
        RuntimeError: On every rank whose own load did not fail, if rank 0
            could not read ``file`` (another error than a ``SnapshotError``)
            or another rank could not load it (naming the ranks and their
            messages).
    """
    import numpy as np

    from corrmom_ref.serializers._archive import NpzArchive

    deserializer = NpzDeserializer({}, **kwargs)
    error: Exception | None = None
    buffer = None
    if communicator.rank == 0:
        error, out = _load_on_root(file, obj, deserializer)
        buffer = np.frombuffer(out.getbuffer(), dtype=np.uint8)
    received = communicator.bcast_buffer(buffer, what="load_npz(), for rank 0 to send the snapshot's members")
    status, view = int(received[0]), memoryview(received)[1:]
    if error is not None:
        raise error
    if status != _LOADED:
        detail = f"the snapshot {file!r}: {bytes(view).decode()}"
        if status == _SNAPSHOT_FAILED:
            raise SnapshotError(f"rank 0 could not load {detail}")
        raise RuntimeError(f"rank 0 could not read {detail}")
    outcome = b""
    if communicator.rank != 0:
        try:
            name = f"the members of {file!r} that rank 0 sent"
            with NpzArchive(cast(BinaryIO, _MemoryFile(view)), name=name) as archive, reading(name):
                deserializer.npz = archive
                deserializer.load(obj)
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
