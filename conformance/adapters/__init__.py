"""Adapters shipped with the suite, and how ``--impl`` finds one."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from corrmom_conformance.protocol import CAPABILITIES, Adapter

#: Registered adapters: name -> "module:factory" (imported lazily).
REGISTRY: dict[str, str] = {
    "ref": "corrmom_conformance.adapters.reference:make_adapter",
    "chainer": "corrmom_conformance.adapters.chainer:make_adapter",
    "torch": "corrmom_conformance.adapters.torch_sgd:make_adapter",
    "optax": "corrmom_conformance.adapters.optax_sgd:make_adapter",
    "ref-torch": "corrmom_conformance.adapters.ref_torch:make_adapter",
    "ref-optax": "corrmom_conformance.adapters.ref_optax:make_adapter",
}

ENV_VAR = "CORRMOM_CONFORMANCE_IMPL"


def resolve(impl: str | None, backend: str | None = None) -> Adapter:
    """The adapter for ``--impl``: a registered name, then ``module:factory``, then ``$CORRMOM_CONFORMANCE_IMPL``.

    ``backend`` is passed to factories that accept it (the reference adapter).
    """
    spec = impl or os.environ.get(ENV_VAR) or "ref"
    target = REGISTRY.get(spec, spec)
    if ":" not in target:
        raise ValueError(
            f"--impl={spec!r} is neither a registered adapter ({', '.join(REGISTRY)}) "
            "nor 'package.module:factory'"
        )
    module_name, _, attr = target.partition(":")
    factory: Callable[..., Adapter] = getattr(importlib.import_module(module_name), attr)
    adapter = factory(backend=backend) if backend is not None and _accepts_backend(factory) else factory()
    _check(adapter, spec)
    return adapter


def _accepts_backend(factory: Callable[..., object]) -> bool:
    import inspect

    try:
        return "backend" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _check(adapter: object, spec: str) -> None:
    missing = [
        a
        for a in ("name", "version", "backend", "capabilities", "state_sign", "create")
        if not hasattr(adapter, a)
    ]
    if missing:
        raise TypeError(
            f"adapter from {spec!r} lacks {', '.join(missing)} (see corrmom_conformance.protocol.Adapter)"
        )
    unknown = set(adapter.capabilities) - set(CAPABILITIES)  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"adapter from {spec!r} declares unknown capabilities: {', '.join(sorted(unknown))}")
