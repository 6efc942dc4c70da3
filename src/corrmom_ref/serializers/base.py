"""The serializer protocol (Chainer's)."""

from __future__ import annotations

from typing import Any

__all__ = ["AbstractSerializer", "Deserializer", "Serializer"]


class AbstractSerializer:
    """A node in a tree of named values.

    ``s[key]`` is the child node at ``key``; ``s(key, value)`` saves (a
    :class:`Serializer`) or loads (a :class:`Deserializer`) one value and
    returns the value to keep.
    """

    def __getitem__(self, key: str) -> AbstractSerializer:
        raise NotImplementedError

    def __call__(self, key: str, value: Any) -> Any:
        raise NotImplementedError


class Serializer(AbstractSerializer):
    """A serializer that saves: ``s(key, value)`` records ``value`` and returns it."""

    def save(self, obj: Any) -> None:
        """Save ``obj`` through its ``serialize`` method."""
        obj.serialize(self)


class Deserializer(AbstractSerializer):
    """A serializer that loads: ``s(key, value)`` returns the stored value.

    ``value`` is the current value, returned unchanged when the key is
    absent from a non-strict source; ``None`` asks for the stored value as it
    is. A missing key in a strict source raises ``KeyError``.
    """

    def load(self, obj: Any) -> None:
        """Load ``obj`` through its ``serialize`` method."""
        obj.serialize(self)
