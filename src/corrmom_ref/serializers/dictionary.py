"""Save a serializable object into a flat ``{path: numpy array}`` dictionary."""

from __future__ import annotations

from typing import Any

from corrmom_ref.serializers.base import Serializer

__all__ = ["DictionarySerializer"]


class DictionarySerializer(Serializer):
    """Flattens an object tree into ``target`` with ``/``-joined keys.

    Arrays of any backend are copied to NumPy on the host; Python scalars
    become 0-d NumPy arrays. ``None`` cannot be stored (npz would need a
    pickle for it), so saving ``None`` raises ``TypeError``.

    Args:
        target: The dictionary to fill (a new one if ``None``).
        path: The prefix of this node's keys.
    """

    def __init__(self, target: dict[str, Any] | None = None, path: str = "") -> None:
        self.target: dict[str, Any] = {} if target is None else target
        self.path = path

    def __getitem__(self, key: str) -> DictionarySerializer:
        return DictionarySerializer(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key: str, value: Any) -> Any:
        from corrmom_ref._backends.host import to_numpy

        full_key = self.path + key.lstrip("/")
        if value is None:
            raise TypeError(f"cannot save None under {full_key!r}: npz would need a pickle")
        self.target[full_key] = to_numpy(value).copy()
        return value
