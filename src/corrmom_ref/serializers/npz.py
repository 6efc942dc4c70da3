"""npz files: :func:`save_npz`, :func:`load_npz` and :class:`NpzDeserializer`."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

from corrmom_ref.serializers.base import Deserializer
from corrmom_ref.serializers.dictionary import DictionarySerializer

__all__ = ["NpzDeserializer", "load_npz", "save_npz"]

IgnoreName = str | Callable[[str], bool]
File = str | os.PathLike[str] | BinaryIO


class NpzDeserializer(Deserializer):
    """Reads values from a mapping of keys to NumPy arrays (an npz file's content).

    Unlike Chainer's, it never copies into the caller's arrays: it returns the
    stored value (a NumPy array, or for a Python scalar ``value`` a scalar of
    the same type) and the caller checks and places it. That is what lets a
    load fail without modifying anything.

    A scalar is checked before it is converted: the stored value must have
    shape ``()`` and, for a ``bool`` ``value``, a bool dtype; for an ``int``,
    an integer dtype; for a ``float``, a float or integer dtype
    (``TypeError`` or ``ValueError`` naming the key otherwise). When ``npz``
    is the archive :func:`load_npz` opens, an array is returned unread (a
    ``StoredArray``, with the ``shape`` and ``dtype`` of its header and a
    ``read()`` method, also accepted by ``numpy.asarray``), so that the caller
    can check it before its data is decompressed.

    Args:
        npz: Mapping from full keys (``'W/v'``) to arrays.
        path: The prefix of this node's keys.
        strict: If false, a missing key returns the current ``value``.
        ignore_names: Keys (strings) or predicates on full keys whose
            entries are not loaded (the current ``value`` is returned).
    """

    def __init__(
        self,
        npz: Mapping[str, Any],
        path: str = "",
        strict: bool = True,
        ignore_names: IgnoreName | Sequence[IgnoreName] | None = None,
    ) -> None:
        self.npz = npz
        self.path = path
        self.strict = strict
        if ignore_names is None:
            ignore_names = []
        elif isinstance(ignore_names, str) or callable(ignore_names):
            ignore_names = [ignore_names]
        for entry in ignore_names:
            if not (isinstance(entry, str) or callable(entry)):
                raise ValueError("ignore_names must be a string, a callable or a list of them")
        self.ignore_names: list[IgnoreName] = list(ignore_names)

    def __getitem__(self, key: str) -> NpzDeserializer:
        return NpzDeserializer(self.npz, self.path + key.strip("/") + "/", self.strict, self.ignore_names)

    def __contains__(self, key: str) -> bool:
        return self.path + key.lstrip("/") in self.npz

    def __call__(self, key: str, value: Any) -> Any:
        full_key = self.path + key.lstrip("/")
        # As in Chainer, an ignored key is skipped before it is looked up, so it
        # may be missing even from a strict snapshot.
        if any(n == full_key if isinstance(n, str) else n(full_key) for n in self.ignore_names):
            return value
        if full_key not in self.npz:
            if self.strict:
                raise KeyError(f"{full_key!r} is not a key of the snapshot")
            return value
        stored = self.npz[full_key]
        if value is None or hasattr(value, "shape"):
            return stored
        return _scalar_like(stored, value, full_key)


#: Stored dtype kinds accepted for a Python scalar ``value`` of each type.
_SCALAR_KINDS = {bool: "b", int: "iu", float: "fiu"}


def _scalar_like(stored: Any, value: Any, key: str) -> Any:
    """The stored 0-d array ``stored`` as a scalar of ``type(value)``.

    Shape and dtype are checked first (on a :class:`StoredArray`, from its
    header, before any data is read): a bool loads only from a bool array, an
    int only from an integer array, a float from a real (float or integer) one.
    """
    from corrmom_ref.serializers._archive import StoredArray

    scalar_type = type(value)
    shape = tuple(getattr(stored, "shape", ()))
    if shape != ():
        raise ValueError(f"{key!r}: expected a scalar, got an array of shape {shape}")
    dtype = getattr(stored, "dtype", None)
    kinds = next((k for t, k in _SCALAR_KINDS.items() if isinstance(value, t)), None)
    kind = getattr(dtype, "kind", None)
    if kinds is not None and (kind is None or kind not in kinds):
        raise TypeError(f"{key!r}: cannot load a {dtype} value into a {scalar_type.__name__}")
    if isinstance(stored, StoredArray):
        stored = stored.read()
    item = stored.item() if hasattr(stored, "item") else stored
    if isinstance(value, numbers.Integral) and not isinstance(item, numbers.Integral):
        raise TypeError(f"{key!r}: cannot load {dtype} into an integer")
    return scalar_type(item)


def save_npz(file: File, obj: Any, compression: bool = True) -> None:
    """Save ``obj`` (anything with ``serialize``, or a dict of arrays) to an npz file.

    Every value is converted and checked before the file is touched: one
    that would need a pickle (an object array, an integer outside int64)
    raises ``TypeError`` or ``ValueError`` naming its key, and nothing is
    written. A path is replaced atomically: the snapshot goes to a temporary
    file in the same directory, which is flushed, synced to disk (``fsync``) and renamed
    over ``file``, so the file at ``file`` is always the previous snapshot or
    the new one, even if the process is killed or the disk fills up; on an
    error the temporary file is removed. This needs write permission on the
    directory (not only on the file). A file object is written in place.

    Args:
        file: Path or binary file object.
        obj: The object (or ``{key: array}`` dict) to save.
        compression: Deflate the members (``numpy.savez_compressed``'s format)
            or store them (``numpy.savez``'s).
    """
    from corrmom_ref.serializers._archive import check_storable, write_npz
    from corrmom_ref.serializers._atomic import replace_file
    from corrmom_ref.serializers._host import to_numpy

    if isinstance(obj, dict):
        target = {key: to_numpy(value) for key, value in obj.items()}
    else:
        serializer = DictionarySerializer()
        serializer.save(obj)
        target = serializer.target
    check_storable(target)  # before the file (or a temporary file) is created
    if isinstance(file, (str, os.PathLike)):
        replace_file(file, lambda f: write_npz(f, target, compression))
    else:
        write_npz(file, target, compression)


def load_npz(
    file: File,
    obj: Any,
    path: str = "",
    strict: bool = True,
    ignore_names: IgnoreName | Sequence[IgnoreName] | None = None,
) -> None:
    """Load ``obj`` from an npz file written by :func:`save_npz` or by Chainer.

    Pickled (object) arrays are refused: Chainer loads with
    ``allow_pickle=True``, which lets a crafted file run code. corrmom_ref's
    objects check every value before assigning any, so a load that raises
    leaves them unchanged.

    Only the keys ``obj`` asks for are read, and each member's shape, dtype
    and size (from its ``.npy`` header and the zip directory) are checked
    before its data is decompressed, so the memory a load needs beyond the
    arrays it returns is a small constant, whatever else the file holds.

    Every file that cannot be loaded into ``obj`` raises
    :class:`~corrmom_ref.serializers.SnapshotError` (a ``ValueError``) naming
    the file and the key at fault: not an npz archive (empty, a single
    ``.npy`` array, other bytes, a truncated zip, a FIFO or a directory at
    the path), a damaged member or directory, a key held twice, a missing key
    under ``strict`` (then also a ``KeyError``), and a value ``obj`` refuses
    (a wrong type or dtype, then also a ``TypeError``; a wrong shape; a value
    out of range).

    Args:
        file: Path or binary file object.
        obj: The object to load into.
        path: Key prefix to load from (e.g. ``'updater/optimizer:main/'``).
        strict: Raise on a missing key (else keep the current value).
        ignore_names: Keys or predicates on keys not to load.

    Raises:
        SnapshotError: see above.
    """
    from corrmom_ref.serializers._archive import NpzArchive
    from corrmom_ref.serializers._errors import reading

    deserializer = NpzDeserializer({}, path=path, strict=strict, ignore_names=ignore_names)
    with NpzArchive(file) as archive, reading(archive.name):
        deserializer.npz = archive
        deserializer.load(obj)
