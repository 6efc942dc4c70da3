"""Chainer's deprecated hook aliases: ``chainer.optimizer.WeightDecay`` and the like.

Chainer 7.8.1 still ships the built-in hooks under ``chainer.optimizer``
(their home before v4); constructing one warns ``DeprecationWarning`` and
then behaves as the hook of ``chainer.optimizer_hooks``. The reference
offers the same names in :mod:`corrmom_ref.optimizer`, with the same warning.
"""

from __future__ import annotations

import warnings
from typing import Any

from corrmom_ref import optimizer_hooks

__all__ = ["deprecated_alias", "deprecation_message"]


def deprecation_message(name: str) -> str:
    """The warning of the alias ``name``: where the hook lives now."""
    return (
        f"corrmom_ref.optimizer.{name} is deprecated, as chainer.optimizer.{name} is since Chainer v4: "
        f"use corrmom_ref.optimizer_hooks.{name} instead"
    )


def deprecated_alias(name: str) -> type:
    """A subclass of the hook ``optimizer_hooks.<name>`` whose constructor warns ``DeprecationWarning`` first."""
    hook: type = getattr(optimizer_hooks, name)

    def warn_then_init(self: Any, *args: Any, **kwargs: Any) -> None:
        warnings.warn(deprecation_message(name), DeprecationWarning, stacklevel=2)
        hook.__init__(self, *args, **kwargs)  # type: ignore[misc]

    doc = f"Deprecated alias of :class:`corrmom_ref.optimizer_hooks.{name}` (warns when constructed)."
    alias = type(
        name, (hook,), {"__init__": warn_then_init, "__doc__": doc, "__module__": "corrmom_ref.optimizer"}
    )
    return alias
