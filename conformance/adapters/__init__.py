"""Adapters for the implementations the suite knows by name, and ``--impl`` resolution."""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["REGISTERED", "resolve"]

#: ``--impl`` names and the factories they stand for.
REGISTERED = {
    "ref": "conformance.adapters.chainer_style:ref",
    "chainer": "conformance.adapters.chainer_style:chainer",
    "torch": "conformance.adapters.torch_sgd:factory",
    "optax": "conformance.adapters.optax_sgd:factory",
}


def resolve(impl: str | None, backend: str) -> Any:
    """The adapter for ``--impl``: a registered name, else ``module:factory``.

    Without ``--impl`` the ``CORRMOM_CONFORMANCE_IMPL`` environment variable is
    used, then ``ref``.
    """
    impl = impl or os.environ.get("CORRMOM_CONFORMANCE_IMPL") or "ref"
    target = REGISTERED.get(impl, impl)
    if ":" not in target:
        raise ValueError(f"--impl={impl!r}: not one of {sorted(REGISTERED)} and not 'module:factory'")
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(backend=backend)
