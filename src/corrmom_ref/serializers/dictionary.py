"""Save a serializable object into a flat ``{path: numpy array}`` dictionary."""

from __future__ import annotations

from typing import Any

from corrmom_ref.serializers.base import Serializer

__all__ = ["DictionarySerializer"]


class DictionarySerializer(Serializer):
    """Flattens an object tree into ``target`` with ``/``-joined keys.

    Arrays of any backend are copied to NumPy on the host; Python scalars
    become 0-d NumPy arrays (an ``int`` an int64, as Chainer writes it).
    Values npz could store only as a pickle are refused with an error naming
    the key: ``None`` (``TypeError``) and an ``int`` outside int64
    (``ValueError``).

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
        import numpy as np

        from corrmom_ref.serializers._host import to_numpy

        full_key = self.path + key.lstrip("/")
        if value is None:
            raise TypeError(f"cannot save None under {full_key!r}: npz would need a pickle")
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise ValueError(
                    f"cannot save {full_key!r} = {value}: outside int64, npz would need a pickle"
                )
            self.target[full_key] = np.asarray(value, dtype=np.int64)
            return value
        self.target[full_key] = to_numpy(value).copy()
        return value
