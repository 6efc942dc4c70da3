"""Adapters shipped with the suite, and how ``--impl`` finds one."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from corrmom_conformance.protocol import CAPABILITIES, Adapter, check_adapter, check_optimizer

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
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise  # the adapter's module was found and failed to import one of its own imports
        raise ImportError(
            f"--impl={spec!r}: no module {error.name!r} in {sys.executable}: install the project that has it "
            "into this environment (python -m pip install -e . in its directory), or run pytest from that "
            "directory (docs/conformance.md, 'A third party')"
        ) from error
    factory: Callable[..., Adapter] | None = getattr(module, attr, None)
    if not callable(factory):
        candidates = sorted(n for n, v in vars(module).items() if callable(v) and "adapter" in n.lower())
        found = f"; callables named like an adapter there: {', '.join(candidates)}" if candidates else ""
        what = "has no" if factory is None else "has a non-callable"
        raise ValueError(f"--impl={spec!r}: module {module_name!r} {what} factory {attr!r}{found}")
    adapter = factory(backend=backend) if backend is not None and _accepts_backend(factory) else factory()
    _check(adapter, spec)
    return adapter


def _accepts_backend(factory: Callable[..., object]) -> bool:
    import inspect

    try:
        return "backend" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


#: The parameters of the optimizer :func:`resolve` creates once to check the optimizer's members.
_PROBE = {"w": (2,)}


def _check(adapter: Adapter, spec: str) -> None:
    """Hold the adapter, and one optimizer it creates, to the protocols of what it declares."""
    label = f"{getattr(adapter, 'name', '?')!r} (from {spec!r})"
    check_adapter(adapter, label)
    unknown = set(adapter.capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"adapter from {spec!r} declares unknown capabilities: {', '.join(sorted(unknown))}")
    import numpy as np

    probe = adapter.create(
        {k: np.zeros(shape, np.float32) for k, shape in _PROBE.items()}, lr=0.1, momentum=0.9
    )
    check_optimizer(probe, label, adapter.capabilities)
