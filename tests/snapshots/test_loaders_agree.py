"""The three snapshot loaders give one verdict on every damaged or hostile file (issue 20, items 8 and 10).

``corrmom_ref.serializers.load_npz`` (the reference), ``corrmom_ref.torch.load_chainer_snapshot``
and ``corrmom_ref.optax.load_chainer_snapshot`` read through one reader: each
bad file below is refused by all three with :class:`corrmom_ref.serializers.SnapshotError`,
whose message names the file and the key at fault, and the target is left as
it was. On c1ab618 the ports loaded ``t=-1``, ``t=1e30``, ``epoch=-5``, an
int32, string, datetime64 or float64 ``v`` (reinterpreting or casting it) and
the last of two copies of a member; a flipped compression method or flag gave
zipfile's ``NotImplementedError`` / ``RuntimeError``; a FIFO blocked forever;
a 4 KB file declaring a 2 GiB array made the ports allocate 2 GiB.
"""

from __future__ import annotations

import os
import re
import threading
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy_format
from snapshot_files import (
    LOADERS,
    members_of,
    npy_bytes,
    patch_central_directory,
    trained_reference,
    zip_bytes,
)

import corrmom_ref as cr

pytest.importorskip("torch")
pytest.importorskip("optax")

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="file-level snapshot tests run in the numpy leg only",
)

MiB = 1 << 20
V = "l1/W/v.npy"


def with_member(name: str, array: np.ndarray) -> Callable[[Path], bytes]:
    def build(_: Path) -> bytes:
        members = members_of(trained_reference())
        members[name] = npy_bytes(array)
        return zip_bytes(list(members.items()))

    return build


def huge_declared_v(_: Path) -> bytes:
    """``l1/W/v`` whose header declares 2**28 float64 (2 GiB) and whose zip directory agrees;
    the file is a few kilobytes."""
    members = members_of(trained_reference())
    header = io_header((1 << 28,), np.float64)
    members[V] = header + b"\0" * 64
    data = zip_bytes(list(members.items()), zipfile.ZIP_DEFLATED)
    return patch_central_directory(data, V, 24, (len(header) + (1 << 31)).to_bytes(4, "little"))


def io_header(shape: tuple[int, ...], dtype: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    return npy_format.MAGIC_PREFIX + b"\x01\x00" + buffer.getvalue()


def duplicate_v(_: Path) -> bytes:
    members = members_of(trained_reference())
    second = npy_bytes(np.full((3, 2), 7.0, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        return zip_bytes([*members.items(), (V, second)])


def central_field(offset: int, value: bytes) -> Callable[[Path], bytes]:
    def build(_: Path) -> bytes:
        data = zip_bytes(list(members_of(trained_reference()).items()), zipfile.ZIP_DEFLATED)
        return patch_central_directory(data, V, offset, value)

    return build


def truncated(_: Path) -> bytes:
    data = zip_bytes(list(members_of(trained_reference()).items()), zipfile.ZIP_DEFLATED)
    return data[: len(data) // 2]


#: (case, how the file is built, patterns of what the message must name besides the file).
CATALOGUE: list[tuple[str, Callable[[Path], bytes] | str, tuple[str, ...]]] = [
    ("t=-1", with_member("t.npy", np.asarray(-1)), ("'t'",)),
    ("t=1e30", with_member("t.npy", np.asarray(1e30)), ("'t'",)),
    ("epoch=-5", with_member("epoch.npy", np.asarray(-5)), ("'epoch'",)),
    ("rule t=-1", with_member("l1/W/t.npy", np.asarray(-1)), ("'l1/W/t'",)),
    ("v int32", with_member(V, np.zeros((3, 2), np.int32)), ("'l1/W/v'", "int32")),
    ("v float64", with_member(V, np.zeros((3, 2), np.float64)), ("'l1/W/v'", "float64")),
    ("v strings", with_member(V, np.full((3, 2), "ab")), ("'l1/W/v'", "<U2")),
    ("v datetime64", with_member(V, np.zeros((3, 2), "datetime64[s]")), ("'l1/W/v'", "datetime64")),
    ("v declares 2 GiB", huge_declared_v, ("'l1/W/v'",)),
    ("v twice", duplicate_v, ("'l1/W/v'", "twice")),
    ("unknown compression method", central_field(10, (99).to_bytes(2, "little")), ("'l1/W/v'",)),
    ("encryption flag", central_field(8, (1).to_bytes(2, "little")), ("'l1/W/v'",)),
    ("patched-data flag", central_field(8, (0x20).to_bytes(2, "little")), ("'l1/W/v'",)),
    ("truncated", truncated, ("truncated or damaged",)),
    ("FIFO", "fifo", ("FIFO",)),
    ("directory", "directory", ("directory",)),
]


def make(tmp_path: Path, build: Callable[[Path], bytes] | str) -> Path:
    path = tmp_path / "snapshot.npz"
    if build == "fifo":
        os.mkfifo(path)
    elif build == "directory":
        path.mkdir()
    else:
        assert callable(build)
        path.write_bytes(build(tmp_path))
    return path


def call_with_timeout(action: Callable[[], Any], path: Path, seconds: float = 20.0) -> BaseException | None:
    """Run ``action`` in a thread; what it raised (``None`` if it returned). A load still blocked
    after ``seconds`` fails the test (and a writer is opened on a FIFO to release it)."""
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            action()
            outcome["error"] = None
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if path.is_fifo():
            with open(path, "wb"):  # unblocks the reader
                pass
        thread.join(5)
        pytest.fail(f"the load of {path} was still blocked after {seconds} s")
    return outcome["error"]


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
        for x, y in ((a[k], b[k]) for k in a)
    )


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize(("case", "build", "names"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_every_loader_refuses_the_bad_file_naming_file_and_key(
    tmp_path: Path, loader: str, case: str, build: Any, names: tuple[str, ...]
) -> None:
    path = make(tmp_path, build)
    target = LOADERS[loader](path)
    before = target.held()
    error = call_with_timeout(target.load, path)
    assert isinstance(error, cr.serializers.SnapshotError), f"{case}: {type(error).__name__}: {error}"
    message = str(error)
    assert repr(str(path)) in message, message
    assert all(re.search(name, message) for name in names), message
    assert same(before, target.held()), f"{case}: the {loader} target changed"


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_the_valid_snapshot_loads_in_every_loader(tmp_path: Path, loader: str) -> None:
    """The control of the catalogue: the file every bad one is made from loads everywhere."""
    path = tmp_path / "snapshot.npz"
    path.write_bytes(zip_bytes(list(members_of(trained_reference()).items()), zipfile.ZIP_DEFLATED))
    target = LOADERS[loader](path)
    before = target.held()
    target.load()
    assert not same(before, target.result())


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("member", ["l1/W/v", "unused/big"])
def test_a_small_file_declaring_a_huge_array_allocates_nothing(
    tmp_path: Path, loader: str, member: str
) -> None:
    """A file of a few kilobytes whose member declares 2 GiB: the loads' traced peak stays
    under 8 MiB (c1ab618's ports allocated the 2 GiB). Under the key the target loads the
    file is refused naming the member; under a key nobody asks for it is never read."""
    members = members_of(trained_reference())
    header = io_header((1 << 28,), np.float64)
    name = member + ".npy"
    members[name] = header + b"\0" * 64
    data = zip_bytes(list(members.items()), zipfile.ZIP_DEFLATED)
    path = tmp_path / "crafted.npz"
    path.write_bytes(patch_central_directory(data, name, 24, (len(header) + (1 << 31)).to_bytes(4, "little")))
    assert path.stat().st_size < 8192
    target = LOADERS[loader](path)
    tracemalloc.start()
    try:
        error = call_with_timeout(target.load, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    if member == "unused/big":
        assert error is None
    else:
        assert isinstance(error, cr.serializers.SnapshotError)
        assert repr(str(path)) in str(error) and "'l1/W/v'" in str(error)
