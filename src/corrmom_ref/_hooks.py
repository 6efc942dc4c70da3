"""Named hook registries with ``pre``/``post`` timing, as Chainer keeps them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

Timing = Literal["pre", "post", "auto"]
TIMINGS = ("pre", "post")


class HookRegistry:
    """Hooks by name, each filed under ``pre`` or ``post``, in registration order.

    Args:
        invalid_auto_timing: What ``timing='auto'`` does with a hook whose own
            ``timing`` attribute is neither ``'pre'`` nor ``'post'``: the
            timing to file it under. Chainer's optimizer falls back to
            ``'pre'``; Chainer's update rules file it as ``'post'`` (a quirk
            kept here for identical behaviour). Both warn here.
    """

    def __init__(self, invalid_auto_timing: Literal["pre", "post"]) -> None:
        self._hooks: dict[str, dict[str, Callable[..., Any]]] = {"pre": {}, "post": {}}
        self._invalid_auto_timing = invalid_auto_timing
        #: Whether any hook is registered (read once per parameter and step).
        self.any = False

    def add(self, hook: Callable[..., Any], name: str | None, timing: Timing) -> None:
        """Register ``hook``; raises before registering anything on bad input."""
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        if timing not in ("pre", "post", "auto"):
            raise ValueError(f"timing must be one of 'pre', 'post', 'auto', got {timing!r}")
        if timing == "auto":
            timing = getattr(hook, "timing", "pre")
            if timing not in TIMINGS:
                warnings.warn(
                    f"hook timing attribute {timing!r} is not 'pre' or 'post'; "
                    f"filing the hook as {self._invalid_auto_timing!r}",
                    stacklevel=3,
                )
                timing = self._invalid_auto_timing
        if name is None:
            name = getattr(hook, "name", getattr(hook, "__name__", None))
            if name is None:
                raise ValueError("the hook has no name: pass name= or give it a name attribute")
        if name in self._hooks["pre"] or name in self._hooks["post"]:
            raise KeyError(f"hook {name!r} already exists")
        self._hooks[timing][name] = hook
        self.any = True

    def remove(self, name: str) -> None:
        """Unregister the hook called ``name``; ``KeyError`` if there is none."""
        for hooks in self._hooks.values():
            if name in hooks:
                del hooks[name]
                self.any = bool(self._hooks["pre"] or self._hooks["post"])
                return
        raise KeyError(f"no hook named {name!r}")

    def of(self, timing: str) -> Iterator[Callable[..., Any]]:
        """The hooks of one timing, in registration order (a snapshot)."""
        if timing not in TIMINGS:
            raise ValueError(f"timing must be 'pre' or 'post', got {timing!r}")
        return iter(list(self._hooks[timing].values()))

    def names(self, timing: str) -> list[str]:
        """The names of the hooks of one timing, in registration order."""
        if timing not in TIMINGS:
            raise ValueError(f"timing must be 'pre' or 'post', got {timing!r}")
        return list(self._hooks[timing])

    def __bool__(self) -> bool:
        return self.any
