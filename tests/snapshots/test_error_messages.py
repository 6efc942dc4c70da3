"""A file that is not a loadable snapshot gets an error saying what it is and what was expected.

Each case also checks that the load changed nothing (loads are transactional).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backends import Backend, load
from helpers import assert_fails_cleanly, saved, trained

import corrmom_ref as cr


@pytest.fixture
def bk_numpy() -> Backend:
    numpy = load("numpy")
    assert not isinstance(numpy, str)
    return numpy


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def snapshot_members(opt: Any) -> dict[str, bytes]:
    return {key + ".npy": npy_bytes(value) for key, value in saved(opt).items()}


def assert_member_refused(
    bk: Backend, key: str, content: Any, pattern: str, compression: int = zipfile.ZIP_STORED
) -> None:
    """A snapshot of a trained optimizer whose member ``key`` holds ``content`` (bytes, or a
    function of the saved bytes) is refused with a ``ValueError`` matching ``pattern``, and
    the optimizer is left as it was."""
    opt = trained(bk)
    members = snapshot_members(opt)
    members[key] = content(members[key]) if callable(content) else content
    file = zip_of(members, compression)
    assert_fails_cleanly(bk, opt, lambda: cr.serializers.load_npz(file, opt), ValueError, pattern)


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"]
)
def test_truncated_npy_member_says_truncated(bk_numpy: Backend, compression: int) -> None:
    """Today's main called this "a pickled object array"; the cause is EOF."""
    assert_member_refused(
        bk_numpy, "l1/W/v.npy", lambda data: data[:-10], r"'l1/W/v'.*truncated.*EOF", compression
    )


def test_member_with_data_beyond_its_header_is_refused(bk_numpy: Backend) -> None:
    assert_member_refused(
        bk_numpy, "l1/W/v.npy", lambda data: data + b"\0" * 24, r"'l1/W/v'.*holds 48 data bytes"
    )


def test_damaged_member_data_fails_the_crc(bk_numpy: Backend) -> None:
    opt = trained(bk_numpy)
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, opt, compression=False)
    raw = bytearray(buffer.getvalue())
    data = npy_bytes(saved(opt)["l1/W/v"])
    at = raw.index(data) + len(data) - 1  # last byte of the stored array's data
    raw[at] ^= 0xFF
    file = io.BytesIO(bytes(raw))
    assert_fails_cleanly(
        bk_numpy,
        opt,
        lambda: cr.serializers.load_npz(file, opt),
        ValueError,
        r"'l1/W/v'.*damaged or truncated",
    )


def test_plain_npy_file(bk_numpy: Backend, tmp_path: Path) -> None:
    """Today's main: "'numpy.ndarray' object does not support the context manager protocol"."""
    opt = trained(bk_numpy)
    path = tmp_path / "model.npy"
    np.save(path, np.zeros(3))
    assert_fails_cleanly(
        bk_numpy,
        opt,
        lambda: cr.serializers.load_npz(path, opt),
        ValueError,
        r"single \.npy array.*expected an npz",
    )


def test_random_bytes(bk_numpy: Backend, tmp_path: Path) -> None:
    """Today's main: NumPy's advice to load with allow_pickle=True."""
    opt = trained(bk_numpy)
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_fails_cleanly(
        bk_numpy,
        opt,
        lambda: cr.serializers.load_npz(path, opt),
        ValueError,
        r"not a zip archive.*expected an npz",
    )


def test_empty_file(bk_numpy: Backend, tmp_path: Path) -> None:
    opt = trained(bk_numpy)
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_fails_cleanly(
        bk_numpy,
        opt,
        lambda: cr.serializers.load_npz(path, opt),
        ValueError,
        r"empty \(0 bytes\).*expected an npz",
    )


def test_truncated_zip(bk_numpy: Backend) -> None:
    """A snapshot cut in half (what a killed save left on today's main)."""
    opt = trained(bk_numpy)
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, opt)
    file = io.BytesIO(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert_fails_cleanly(
        bk_numpy, opt, lambda: cr.serializers.load_npz(file, opt), ValueError, r"truncated or damaged"
    )


def test_wrong_shaped_flag(bk_numpy: Backend) -> None:
    """Today's main: "can only convert an array of size 1 to a Python scalar"."""
    assert_member_refused(
        bk_numpy,
        "loss_scaling.dynamic.npy",
        npy_bytes(np.array([True, False])),
        r"'loss_scaling\.dynamic'.*expected a scalar, got an array of shape \(2,\)",
    )


def test_member_that_is_not_npy(bk_numpy: Backend) -> None:
    assert_member_refused(bk_numpy, "t.npy", b"not an array", r"'t'.*not a valid \.npy array")
