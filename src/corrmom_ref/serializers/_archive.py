"""Reading and writing npz archives with bounded memory and no pickles.

An npz file is a zip archive whose member ``<key>.npy`` holds one array in
NumPy's ``.npy`` format: a header (shape, dtype, memory order) followed by
``prod(shape) * itemsize`` bytes of data.

:class:`NpzArchive` opens the zip's central directory only. Indexing it with a
key reads that member's ``.npy`` header alone and returns a
:class:`StoredArray`, whose shape and dtype come from the header; its data is
read only by :meth:`StoredArray.read`. Before that, the member's declared size
(the central directory's ``file_size``) must equal the header's length plus
``prod(shape) * itemsize``, and object dtypes (pickles) are refused, so
reading never inflates more than the array it returns. A member that is never
asked for is never decompressed. The zip's central directory, which Python's
:mod:`zipfile` parses whole, is refused over :data:`MAX_DIRECTORY_BYTES`.

:func:`write_npz` writes every array with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["NpzArchive", "StoredArray", "check_storable", "write_npz"]

#: Bytes decompressed per read while filling an array.
CHUNK = 1 << 18
#: The longest ``.npy`` header accepted (NumPy's own default limit).
MAX_HEADER = 10000

#: The largest zip central directory accepted: 8 MiB, about 90,000 members
#: with names of 40 characters. Python's zipfile needs several times this
#: size in memory to parse a directory, whatever its members hold.
MAX_DIRECTORY_BYTES = 8 << 20

_END_RECORD, _ZIP64_LOCATOR, _ZIP64_RECORD = 22, 20, 56
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _describe(file: Any) -> str:
    if isinstance(file, (str, os.PathLike)):
        return repr(os.fspath(file))
    name = getattr(file, "name", None)
    return f"file object {name!r}" if isinstance(name, str) else f"a {type(file).__name__} object"


def _central_directory_size(stream: BinaryIO) -> int | None:
    """The size the zip's end record declares for its central directory (zip64 too).

    ``None`` when there is no end record; :class:`zipfile.ZipFile` then says
    what is wrong. The stream's position is restored.
    """
    position = stream.tell()
    try:
        end = stream.seek(0, os.SEEK_END)
        length = min(end, _END_RECORD + 0xFFFF)  # the record, then a comment of up to 64 KiB
        stream.seek(end - length)
        tail = stream.read(length)
    finally:
        stream.seek(position)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_RECORD:
        return None
    size = int.from_bytes(tail[at + 12 : at + 16], "little")
    record64 = at - _ZIP64_LOCATOR - _ZIP64_RECORD  # zip64: its record, then a locator, precede
    if size == 0xFFFFFFFF and record64 >= 0 and tail[record64 : record64 + 4] == b"PK\x06\x06":
        size = int.from_bytes(tail[record64 + 40 : record64 + 48], "little")
    return size


class StoredArray:
    """One array of an :class:`NpzArchive`, known by its header until :meth:`read`.

    Attributes:
        key: The snapshot key.
        shape: The shape declared by the ``.npy`` header.
        dtype: The NumPy dtype declared by the header.
        nbytes: ``prod(shape) * dtype.itemsize``, checked against the zip entry's size.
    """

    def __init__(
        self,
        archive: NpzArchive,
        key: str,
        info: zipfile.ZipInfo,
        header_length: int,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        fortran_order: bool,
    ) -> None:
        self.key = key
        self.shape = shape
        self.dtype = dtype
        self.nbytes = math.prod(shape) * dtype.itemsize
        self._archive = archive
        self._info = info
        self._header_length = header_length
        self._fortran_order = fortran_order

    @property
    def ndim(self) -> int:
        """Number of dimensions (from the header)."""
        return len(self.shape)

    def read(self) -> np.ndarray:
        """The array (a new NumPy array): exactly :attr:`nbytes` of data are decompressed.

        Raises:
            ValueError: the data ends early or fails the zip's CRC check.
        """
        count = math.prod(self.shape)
        flat = np.empty(count, dtype=self.dtype)
        raw = flat.view(np.uint8)
        filled = 0
        try:
            with self._archive._zip.open(self._info) as member:
                member.read(self._header_length)
                while filled < self.nbytes:
                    chunk = member.read(min(CHUNK, self.nbytes - filled))
                    if not chunk:
                        break
                    raw[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                    filled += len(chunk)
                member.read(1)  # at the end: lets zipfile check the CRC
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
            raise ValueError(
                f"snapshot key {self.key!r}: the data of {self._info.filename!r} is damaged or "
                f"truncated ({error})"
            ) from error
        if filled < self.nbytes:
            raise ValueError(
                f"snapshot key {self.key!r}: truncated .npy member: EOF after {filled} of the "
                f"{self.nbytes} data bytes its header declares"
            )
        if self._fortran_order:
            return flat.reshape(self.shape[::-1]).transpose()
        return flat.reshape(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"StoredArray(key={self.key!r}, shape={self.shape}, dtype={self.dtype})"


class NpzArchive(Mapping[str, StoredArray]):
    """The arrays of an npz file, by key, read lazily (see the module docstring).

    Use as a context manager; a path is opened (and closed) here, a binary
    file object is read from its current position and left open.

    Args:
        file: A path or a seekable binary file object.

    Raises:
        ValueError: ``file`` is not a zip archive; the message says what it
            is when it can tell (empty, a single ``.npy`` array, other bytes).
    """

    def __init__(self, file: str | os.PathLike[str] | BinaryIO) -> None:
        self.name = _describe(file)
        self._owned: BinaryIO | None = None
        stream: BinaryIO
        if isinstance(file, (str, os.PathLike)):
            self._owned = stream = open(file, "rb")  # noqa: SIM115 (closed by close())
        else:
            stream = file
        try:
            start = stream.tell()
            head = stream.read(len(_NPY_MAGIC))
            stream.seek(start)
            self._check_head(head)
            self._check_directory_size(stream)
            try:
                self._zip = zipfile.ZipFile(stream)
            except (zipfile.BadZipFile, EOFError, OSError) as error:
                raise ValueError(
                    f"{self.name} starts like a zip archive but cannot be read as one ({error}): "
                    "truncated or damaged; an npz snapshot is a complete zip archive of .npy members"
                ) from error
        except BaseException:
            self.close()
            raise
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            name = info.filename
            self._members[name[:-4] if name.endswith(".npy") else name] = info

    def _check_directory_size(self, stream: BinaryIO) -> None:
        """Refuse a central directory over :data:`MAX_DIRECTORY_BYTES` before zipfile parses it."""
        size = _central_directory_size(stream)
        if size is not None and size > MAX_DIRECTORY_BYTES:
            raise ValueError(
                f"{self.name} has a zip directory of {size} bytes, over the {MAX_DIRECTORY_BYTES} "
                "bytes a snapshot may have (about 90,000 arrays); refused before reading it, "
                "since reading it takes several times its size in memory"
            )

    def _check_head(self, head: bytes) -> None:
        expected = "an npz snapshot (a zip archive of .npy members, as save_npz writes)"
        if not head:
            raise ValueError(f"{self.name} is empty (0 bytes), expected {expected}")
        if head.startswith(_NPY_MAGIC):
            raise ValueError(f"{self.name} is a single .npy array (numpy.save's format), expected {expected}")
        if head[:4] not in _ZIP_MAGIC:
            raise ValueError(
                f"{self.name} is not a zip archive (it starts with {head!r}), expected {expected}"
            )

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the zip (and the file, when a path was given)."""
        zip_file = self.__dict__.pop("_zip", None)
        if zip_file is not None:
            zip_file.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __getitem__(self, key: str) -> StoredArray:
        info = self._members[key]
        try:
            with self._zip.open(info) as member:
                version = npy_format.read_magic(member)
                if version == (1, 0):
                    shape, fortran_order, dtype = npy_format.read_array_header_1_0(
                        member, max_header_size=MAX_HEADER
                    )
                elif version in ((2, 0), (3, 0)):
                    shape, fortran_order, dtype = npy_format.read_array_header_2_0(
                        member, max_header_size=MAX_HEADER
                    )
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                header_length = member.tell()
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
            raise ValueError(
                f"snapshot key {key!r}: member {info.filename!r} of {self.name} is damaged or truncated ({error})"
            ) from error
        except ValueError as error:
            raise ValueError(
                f"snapshot key {key!r}: member {info.filename!r} of {self.name} is not a valid .npy "
                f"array ({error})"
            ) from error
        if dtype.hasobject:
            raise ValueError(
                f"snapshot key {key!r} holds a pickled object array; "
                "corrmom_ref never unpickles snapshot data (it could run code)"
            )
        stored = StoredArray(self, key, info, header_length, tuple(shape), dtype, fortran_order)
        held = info.file_size - header_length
        if held < stored.nbytes:
            raise ValueError(
                f"snapshot key {key!r}: truncated .npy member (EOF): its header declares shape "
                f"{stored.shape} {dtype} ({stored.nbytes} data bytes), but the zip entry holds "
                f"{max(held, 0)}"
            )
        if held > stored.nbytes:
            raise ValueError(
                f"snapshot key {key!r}: the zip entry holds {held} data bytes, but its .npy header "
                f"declares shape {stored.shape} {dtype} ({stored.nbytes} bytes)"
            )
        return stored


def check_storable(arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ``TypeError`` naming the first key whose array has an object dtype (it would need a pickle)."""
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise TypeError(
                f"cannot save {key!r}: a {array.dtype} array would need a pickle, which corrmom_ref never writes"
            )


def write_npz(file: BinaryIO, arrays: Mapping[str, np.ndarray], compression: bool) -> None:
    """Write ``arrays`` as an npz archive (member ``<key>.npy`` per key) to ``file``.

    Raises:
        TypeError: from :func:`check_storable`, before anything is written.
    """
    check_storable(arrays)
    method = zipfile.ZIP_DEFLATED if compression else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, mode="w", compression=method, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", mode="w", force_zip64=True) as member:
                npy_format.write_array(member, array, allow_pickle=False)  # type: ignore[arg-type]
