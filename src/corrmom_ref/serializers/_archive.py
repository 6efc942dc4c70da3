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
:mod:`zipfile` parses whole, is refused over :data:`MAX_DIRECTORY_BYTES`; so is
a directory naming one member twice (which copy would load is not defined),
and a member whose declared size could not come out of its compressed bytes
(a stored member's two sizes differ, a deflated one's exceeds
:data:`MAX_DEFLATE_RATIO` times its compressed size, or its compressed bytes
run past the end of the file).

A path is opened only when it names a regular file: a FIFO, a directory or a
device is refused without blocking on it.

Every failure to read the file is a
:class:`~corrmom_ref.serializers.SnapshotError` naming the file and, for a
member, its key (never :mod:`zipfile`'s ``NotImplementedError`` or
``RuntimeError`` for an unknown compression method or an encryption flag).

:func:`write_npz` writes every array with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from corrmom_ref.serializers._errors import SnapshotError

__all__ = ["NpzArchive", "StoredArray", "check_storable", "write_npz"]

#: Bytes decompressed per read while filling an array.
CHUNK = 1 << 18
#: The longest ``.npy`` header accepted (NumPy's own default limit).
MAX_HEADER = 10000

#: The largest zip central directory accepted: 8 MiB, about 90,000 members
#: with names of 40 characters. Python's zipfile needs several times this
#: size in memory to parse a directory, whatever its members hold.
MAX_DIRECTORY_BYTES = 8 << 20

#: The largest ratio of inflated to compressed size deflate can reach (about 1032:1).
MAX_DEFLATE_RATIO = 1032

#: What zipfile raises for a damaged member: a bad local header or CRC, a truncated stream,
#: an unknown compression method (NotImplementedError), an encryption flag (RuntimeError).
_MEMBER_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError, RuntimeError)

_END_RECORD, _ZIP64_LOCATOR, _ZIP64_RECORD = 22, 20, 56
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _describe(file: Any) -> str:
    if isinstance(file, (str, os.PathLike)):
        return repr(os.fspath(file))
    name = getattr(file, "name", None)
    return f"file object {name!r}" if isinstance(name, str) else f"a {type(file).__name__} object"


def _open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading if it is a regular file, else :class:`SnapshotError`.

    Checked before opening and again on the open descriptor (opened without
    blocking, so a FIFO with no writer cannot hang the open): a FIFO, a
    directory or a device is refused naming the path.
    """

    def refuse(mode: int) -> SnapshotError:
        what = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        return SnapshotError(
            f"{os.fspath(path)!r} is {what}, not a regular file: an npz snapshot is read from a file"
        )

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise refuse(mode)
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    )
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise refuse(mode)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


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
            SnapshotError: the data ends early or fails the zip's CRC check.
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
        except _MEMBER_ERRORS as error:
            raise SnapshotError(
                f"snapshot key {self.key!r}: the data of {self._info.filename!r} in "
                f"{self._archive.name} is damaged or truncated ({type(error).__name__}: {error})"
            ) from error
        if filled < self.nbytes:
            raise SnapshotError(
                f"snapshot key {self.key!r}: truncated .npy member {self._info.filename!r} of "
                f"{self._archive.name}: EOF after {filled} of the {self.nbytes} data bytes its header declares"
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
        name: How messages name the file (default: the path, or the file object's ``name``).

    Raises:
        SnapshotError: ``file`` is not a regular file or not a zip archive
            (the message says what it is when it can tell: empty, a single
            ``.npy`` array, other bytes), or its directory is damaged or names
            a member twice.
    """

    def __init__(self, file: str | os.PathLike[str] | BinaryIO, name: str | None = None) -> None:
        self.name = _describe(file) if name is None else name
        self._owned: BinaryIO | None = None
        stream: BinaryIO
        if isinstance(file, (str, os.PathLike)):
            self._owned = stream = _open_regular(file)
        else:
            stream = file
        try:
            start = stream.tell()
            head = stream.read(len(_NPY_MAGIC))
            stream.seek(start)
            self._check_head(head)
            self._check_directory_size(stream)
            self._length = stream.seek(0, os.SEEK_END)
            stream.seek(start)
            try:
                self._zip = zipfile.ZipFile(stream)
            except Exception as error:  # zipfile raises many types for a damaged directory
                raise SnapshotError(
                    f"{self.name} starts like a zip archive but cannot be read as one "
                    f"({type(error).__name__}: {error}): truncated or damaged; an npz snapshot is "
                    "a complete zip archive of .npy members"
                ) from error
            self._members = self._index(self._zip.infolist())
        except BaseException:
            self.close()
            raise

    def _index(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        """``{key: member}``; a key held twice (``k.npy`` twice, or ``k`` and ``k.npy``) is refused."""
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if key in members:
                raise SnapshotError(
                    f"snapshot key {key!r}: {self.name} holds it twice (members "
                    f"{members[key].filename!r} and {name!r}); which one is the snapshot's is not "
                    "defined, so the file is refused as damaged or crafted"
                )
            members[key] = info
        return members

    def _check_directory_size(self, stream: BinaryIO) -> None:
        """Refuse a central directory over :data:`MAX_DIRECTORY_BYTES` before zipfile parses it."""
        size = _central_directory_size(stream)
        if size is not None and size > MAX_DIRECTORY_BYTES:
            raise SnapshotError(
                f"{self.name} has a zip directory of {size} bytes, over the {MAX_DIRECTORY_BYTES} "
                "bytes a snapshot may have (about 90,000 arrays); refused before reading it, "
                "since reading it takes several times its size in memory"
            )

    def _check_head(self, head: bytes) -> None:
        expected = "an npz snapshot (a zip archive of .npy members, as save_npz writes)"
        if not head:
            raise SnapshotError(f"{self.name} is empty (0 bytes), expected {expected}")
        if head.startswith(_NPY_MAGIC):
            raise SnapshotError(
                f"{self.name} is a single .npy array (numpy.save's format), expected {expected}"
            )
        if head[:4] not in _ZIP_MAGIC:
            raise SnapshotError(
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

    def write_members(self, keys: Iterable[str], file: BinaryIO) -> None:
        """Write the members of ``keys`` to ``file`` as a new npz archive (stored, not
        compressed), streamed in chunks of :data:`CHUNK`: memory beyond ``file`` is constant.

        Raises:
            SnapshotError: a member is damaged (naming it).
        """
        with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as out:
            for key in keys:
                info = self._members[key]
                self._check_sizes(key, info)
                try:
                    with (
                        self._zip.open(info) as source,
                        out.open(info.filename, "w", force_zip64=True) as target,
                    ):
                        while chunk := source.read(CHUNK):
                            target.write(chunk)
                except _MEMBER_ERRORS as error:
                    raise SnapshotError(
                        f"snapshot key {key!r}: member {info.filename!r} of {self.name} is damaged or "
                        f"truncated ({type(error).__name__}: {error})"
                    ) from error

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def _check_sizes(self, key: str, info: zipfile.ZipInfo) -> None:
        """Refuse sizes no honest member has, before anything of it is read."""
        where = f"snapshot key {key!r}: member {info.filename!r} of {self.name}"
        if info.header_offset + info.compress_size > self._length:
            raise SnapshotError(
                f"{where} declares {info.compress_size} compressed bytes from offset "
                f"{info.header_offset}, past the end of the {self._length}-byte file: truncated or damaged"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise SnapshotError(
                f"{where} is stored uncompressed but declares {info.file_size} bytes in "
                f"{info.compress_size}: damaged"
            )
        if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + MAX_HEADER:
            raise SnapshotError(
                f"{where} declares {info.file_size} bytes from {info.compress_size} compressed "
                f"bytes, more than deflate can produce: damaged or crafted"
            )

    def __getitem__(self, key: str) -> StoredArray:
        info = self._members[key]
        self._check_sizes(key, info)
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
        except _MEMBER_ERRORS as error:
            raise SnapshotError(
                f"snapshot key {key!r}: member {info.filename!r} of {self.name} is damaged or truncated "
                f"({type(error).__name__}: {error})"
            ) from error
        except (ValueError, SyntaxError, TypeError) as error:  # what numpy's header parser raises
            raise SnapshotError(
                f"snapshot key {key!r}: member {info.filename!r} of {self.name} is not a valid .npy "
                f"array ({error})"
            ) from error
        if dtype.hasobject:
            raise SnapshotError(
                f"snapshot key {key!r} of {self.name} holds a pickled object array; "
                "corrmom_ref never unpickles snapshot data (it could run code)"
            )
        stored = StoredArray(self, key, info, header_length, tuple(shape), dtype, fortran_order)
        held = info.file_size - header_length
        if held < stored.nbytes:
            raise SnapshotError(
                f"snapshot key {key!r}: truncated .npy member {info.filename!r} of {self.name} (EOF): "
                f"its header declares shape {stored.shape} {dtype} ({stored.nbytes} data bytes), but "
                f"the zip entry holds {max(held, 0)}"
            )
        if held > stored.nbytes:
            raise SnapshotError(
                f"snapshot key {key!r}: the zip entry {info.filename!r} of {self.name} holds {held} "
                f"data bytes, but its .npy header declares shape {stored.shape} {dtype} ({stored.nbytes} bytes)"
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
