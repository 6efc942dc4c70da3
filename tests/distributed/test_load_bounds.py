"""``corrmom_ref.distributed.load_npz`` sends only the members the object loads (issue 20, item 11).

On c1ab618 rank 0 read the whole file and broadcast it: a snapshot holding a
large member nobody loads grew every rank's memory by its size (twice). Now
rank 0 loads as ``serializers.load_npz`` does and broadcasts only the
members its object read. These tests run one rank at a time with a stand-in
communicator that records what rank 0 broadcasts and hands it to another
rank (the MPI runs of ``tests/distributed`` check the collective behaviour).
"""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy_format

import corrmom_ref as cr
from corrmom_ref import distributed

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="file-level snapshot tests run in the numpy leg only",
)

MiB = 1 << 20
N = MiB // 4  # float32 elements of the model's parameter: 1 MiB
UNUSED = 32 * MiB


class StandInCommunicator:
    """One rank of ``size``: rank 0 records the lengths (and, with ``keep``, the bytes) it
    broadcasts; another rank receives the recorded ``inbox`` instead."""

    def __init__(
        self, rank: int, size: int = 2, inbox: list[bytes] | None = None, keep: bool = False
    ) -> None:
        self.rank, self.size = rank, size
        self.inbox = list(inbox or [])
        self.keep = keep
        self.lengths: list[int] = []
        self.sent: list[bytes] = []

    def _send(self, data: Any) -> None:
        self.lengths.append(len(data))
        if self.keep:
            self.sent.append(bytes(data))

    def bcast_buffer(self, buffer: Any, root: int = 0, what: str = "") -> Any:
        if self.rank == root:
            self._send(buffer)
            return buffer
        return np.frombuffer(self.inbox.pop(0), dtype=np.uint8).copy()

    def bcast_bytes(self, data: bytes | None, root: int = 0, what: str = "") -> bytes:
        if self.rank == root:
            assert data is not None
            self._send(data)
            return data
        return self.inbox.pop(0)

    def bcast_file(self, file: Any, root: int = 0) -> io.BytesIO:
        """c1ab618's interface: the whole file, read on ``root``."""
        payload = None
        if self.rank == root:
            with open(file, "rb") as f:
                payload = b"\x00" + f.read()
        return io.BytesIO(self.bcast_bytes(payload, root)[1:])

    def allgather_bytes(self, data: bytes, what: str = "") -> list[bytes]:
        return [data] * self.size


def optimizer() -> cr.GradientMethod:
    link = cr.Link(W=cr.Parameter(np.linspace(-1, 1, N, dtype=np.float32)))
    return cr.CorrectedMomentumSGD(lr=0.1).setup(link)


def snapshot_with_an_unused_member(path: Path) -> cr.GradientMethod:
    """The trained optimizer's snapshot (stored) plus ``unused/big``: 32 MiB of stored zeros."""
    opt = optimizer()
    opt.target.W.grad = np.full(N, 0.5, np.float32)
    opt.update()
    cr.serializers.save_npz(path, opt, compression=False)
    with (
        zipfile.ZipFile(path, "a") as archive,
        archive.open("unused/big.npy", "w", force_zip64=True) as member,
    ):
        npy_format.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": (UNUSED // 4,)}
        )
        for _ in range(UNUSED // MiB):
            member.write(bytes(MiB))
    return opt


def state(opt: cr.GradientMethod) -> tuple[int, np.ndarray]:
    return opt.t, np.asarray(opt.target.W.update_rule.state["v"]).copy()


def test_rank_0_broadcasts_only_the_members_its_object_loads(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.npz"
    snapshot_with_an_unused_member(path)
    assert path.stat().st_size > UNUSED
    comm = StandInCommunicator(rank=0)
    opt = optimizer()
    tracemalloc.start()
    try:
        distributed.load_npz(comm, str(path), opt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(comm.lengths) < 3 * MiB, comm.lengths  # t, epoch, W/t and W/v (1 MiB)
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert opt.t == 1


def test_another_rank_loads_what_rank_0_sent(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.npz"
    saved = snapshot_with_an_unused_member(path)
    root = StandInCommunicator(rank=0, keep=True)
    distributed.load_npz(root, str(path), optimizer())
    other = StandInCommunicator(rank=1, inbox=root.sent)
    opt = optimizer()
    distributed.load_npz(other, str(tmp_path / "not-on-this-rank.npz"), opt)
    t, v = state(opt)
    assert t == saved.t
    np.testing.assert_array_equal(v, state(saved)[1])


def test_a_damaged_file_raises_snapshot_error_on_every_rank(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.npz"
    snapshot_with_an_unused_member(path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"W/v.npy") + 1000] ^= 0xFF  # inside W/v's data: its CRC no longer matches
    path.write_bytes(bytes(raw))
    root = StandInCommunicator(rank=0, keep=True)
    opt = optimizer()
    with pytest.raises(cr.serializers.SnapshotError, match=r"'W/v'.*snapshot\.npz.*damaged"):
        distributed.load_npz(root, str(path), opt)
    assert opt.t == 0
    other = StandInCommunicator(rank=1, inbox=root.sent)
    with pytest.raises(cr.serializers.SnapshotError, match=r"rank 0 could not load the snapshot .*'W/v'"):
        distributed.load_npz(other, str(path), optimizer())


def test_a_missing_file_is_rank_0s_error_and_a_runtime_error_elsewhere(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.npz")
    root = StandInCommunicator(rank=0, keep=True)
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        distributed.load_npz(root, missing, optimizer())
    other = StandInCommunicator(rank=1, inbox=root.sent)
    with pytest.raises(RuntimeError, match=r"rank 0 could not read the snapshot .*missing\.npz"):
        distributed.load_npz(other, missing, optimizer())
