"""Chainer paths of pytree paths (shared by the loss-scaling wrapper and the snapshots)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["chainer_path", "plain_key"]


def plain_key(key: Any) -> Hashable:
    """The plain key of one pytree path entry (a dict key, attribute name or sequence index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)  # type: ignore[no-any-return]
    return key  # type: ignore[no-any-return]


def chainer_path(path: tuple[Any, ...]) -> str:
    """The default Chainer path of a pytree path: ``('l1', 'W')`` (or its key entries) -> ``'/l1/W'``."""
    return "/" + "/".join(str(plain_key(k)) for k in path)
