"""Chainer-compatible serialization: the serializer protocol and npz files.

An object with a ``serialize(serializer)`` method saves itself by calling
``serializer(key, value)`` and ``serializer[child]``; loading calls the same
method with a :class:`~corrmom_ref.serializers.Deserializer`, whose calls
return the stored values. Keys are Chainer's, so snapshots move between
Chainer and corrmom_ref in both directions.
"""

from corrmom_ref.serializers._errors import SnapshotError
from corrmom_ref.serializers.base import AbstractSerializer, Deserializer, Serializer
from corrmom_ref.serializers.dictionary import DictionarySerializer
from corrmom_ref.serializers.npz import NpzDeserializer, load_npz, save_npz

__all__ = [
    "AbstractSerializer",
    "Deserializer",
    "DictionarySerializer",
    "NpzDeserializer",
    "Serializer",
    "SnapshotError",
    "load_npz",
    "save_npz",
]
