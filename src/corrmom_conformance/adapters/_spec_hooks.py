"""The one interpreter of :class:`~corrmom_conformance.protocol.HookSpec`: the hook object an adapter registers.

Chainer, :mod:`corrmom_ref` and :mod:`corrmom_ref.torch` call a hook the same
way: ``hook(optimizer)`` for a whole-optimizer call, ``hook(owner, param)``
for a per-parameter or update-rule call. So one hook object serves them all
(:func:`hook_from_spec`); what differs is how an implementation's parameters
hold their gradients, which the adapter says in a :class:`Gradients`.

A call records a :class:`~corrmom_conformance.protocol.HookEvent` (the
gradients it saw, as NumPy copies), then, as the spec asks, scales the
gradient(s) of its call, adds a constant to them, and clears one parameter's
gradient, in that order; a gradient that is ``None`` is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from corrmom_conformance.protocol import HookEvent, HookSpec


@dataclass(frozen=True)
class Gradients:
    """How a hook reaches one optimizer's parameters (objects with a ``grad`` attribute).

    Attributes:
        params: The parameters by the suite's names (``l1/W``).
        name_of: The suite's name of the parameter a per-parameter call is for
            (``None``: not known).
        to_numpy: A NumPy copy of a gradient.
        scale: ``scale(param, factor)`` multiplies the parameter's gradient, so
            that the update reads the product.
        add: ``add(param, value)`` adds a constant to the parameter's gradient, likewise.
        clear: Clears the parameter's gradient.
        t: The optimizer's ``t`` now.
    """

    params: Mapping[str, Any]
    name_of: Callable[[Any], str | None]
    to_numpy: Callable[[Any], np.ndarray]
    scale: Callable[[Any, float], None]
    add: Callable[[Any, float], None]
    clear: Callable[[Any], None]
    t: Callable[[], int]


def hook_from_spec(spec: HookSpec, record: Callable[[HookEvent], None], gradients: Gradients) -> Any:
    """The hook object ``spec`` describes: it reports each call to ``record``, then edits gradients.

    It carries the attributes the spec asks for: ``call_for_each_param``
    always, ``name`` and ``timing`` where given.
    """
    label = spec.name or spec.attr_name or "?"

    def seen(param: Any) -> np.ndarray | None:
        return None if param.grad is None else gradients.to_numpy(param.grad)

    class Hook:
        def __call__(self, *args: Any) -> None:
            param = args[1] if len(args) == 2 else None
            if param is not None:
                name = gradients.name_of(param)
                grads = {name: seen(param)}
                touched = [param]
            else:
                name = None
                grads = {k: seen(p) for k, p in gradients.params.items()}
                touched = list(gradients.params.values())
            record(HookEvent(hook=label, param=name, grads=grads, t=gradients.t()))
            for target in touched:
                if target.grad is None:
                    continue
                if spec.scale is not None:
                    gradients.scale(target, spec.scale)
                if spec.add is not None:
                    gradients.add(target, spec.add)
            if spec.clears_grad is not None:
                cleared = name if spec.clears_grad == "*" else spec.clears_grad
                if cleared is not None and cleared in gradients.params:
                    gradients.clear(gradients.params[cleared])

    hook = Hook()
    hook.call_for_each_param = spec.per_param  # type: ignore[attr-defined]
    if spec.attr_name is not None:
        hook.name = spec.attr_name  # type: ignore[attr-defined]
    if spec.attr_timing is not None:
        hook.timing = spec.attr_timing  # type: ignore[attr-defined]
    return hook
