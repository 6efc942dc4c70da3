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
        scalar_type = type(value)
        if stored.shape != ():
            raise ValueError(f"{full_key!r}: expected a scalar, got an array of shape {stored.shape}")
        item = stored.item()
        if isinstance(value, numbers.Integral) and not isinstance(item, numbers.Integral):
            raise TypeError(f"{full_key!r}: cannot load {stored.dtype} into an integer")
        return scalar_type(item)


def save_npz(file: File, obj: Any, compression: bool = True) -> None:
    """Save ``obj`` (anything with ``serialize``, or a dict of arrays) to an npz file."""
    from corrmom_ref._backends.host import save_npz_file

    if isinstance(obj, dict):
        target = obj
    else:
        serializer = DictionarySerializer()
        serializer.save(obj)
        target = serializer.target
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            save_npz_file(f, target, compression)
    else:
        save_npz_file(file, target, compression)


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

    Args:
        file: Path or binary file object.
        obj: The object to load into.
        path: Key prefix to load from (e.g. ``'updater/optimizer:main/'``).
        strict: Raise ``KeyError`` on a missing key (else keep the current value).
        ignore_names: Keys or predicates on keys not to load.
    """
    from corrmom_ref._backends.host import load_npz_file

    arrays = load_npz_file(file)
    NpzDeserializer(arrays, path=path, strict=strict, ignore_names=ignore_names).load(obj)
