"""The fast-path switch's state: one ``ContextVar``, read by the dispatch and the JAX path.

Kept apart from :mod:`corrmom_ref.fast_paths` (its public face) so that the
backend modules can read it without importing the dispatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

__all__ = ["FastPathSetting", "current", "use_fast_paths"]


class FastPathSetting(NamedTuple):
    """Whether native fast paths run, and whether immutable backends may donate the old buffers."""

    enabled: bool = True
    donate: bool = False


_DEFAULT = FastPathSetting()  # fast paths on, no donation
_SETTING: ContextVar[FastPathSetting] = ContextVar("corrmom_ref_fast_paths", default=_DEFAULT)

#: The current setting (``ContextVar.get``, bound once).
current = _SETTING.get


@contextmanager
def use_fast_paths(enabled: bool, *, donate: bool = False) -> Iterator[None]:
    """Within the block (and only in this thread or task), use or bypass the native fast paths.

    ``enabled=False`` runs the generic Array API step (blocked, still in place
    where it can be). ``donate=True`` lets the JAX fast path reuse the buffers
    of the old parameter and state for the new ones: any other reference to
    the previous ``param.array`` becomes invalid, hence opt-in. The previous
    setting comes back when the block ends, also by an exception; a thread or
    ``asyncio`` task started elsewhere keeps its own setting
    (a ``contextvars.ContextVar``).
    """
    token = _SETTING.set(FastPathSetting(bool(enabled), bool(donate)))
    try:
        yield
    finally:
        _SETTING.reset(token)
