"""One adapter for every implementation with Chainer's optimizer API.

Real Chainer and :mod:`corrmom_ref` share the API (``setup``, ``update``,
``update_rule``, hooks, ``loss_scaling``, npz serializers), so they differ here
only in how a link of named parameters is built, how a scaled backward is
scripted, and how arrays convert to NumPy: the :class:`Flavour`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from corrmom_conformance.adapters._spec_hooks import Gradients, hook_from_spec
from corrmom_conformance.protocol import CAPABILITIES, HookEvent, HookSpec

#: Capabilities that depend on how an implementation computes, not on Chainer's API:
#: ``generic_variant`` (a twin without native kernels), ``chainer_rounding``
#: (Chainer's roundings, bitwise) and ``exact_variant`` (a mode that has them).
#: An adapter adds them where they hold.
NOT_FROM_THE_API = frozenset({"generic_variant", "chainer_rounding", "exact_variant"})

#: The capabilities Chainer's optimizer API gives, so every Chainer-API
#: implementation has it: the protocol's list (:data:`~corrmom_conformance.protocol.CAPABILITIES`)
#: less :data:`NOT_FROM_THE_API`.
API_CAPABILITIES = frozenset(CAPABILITIES) - NOT_FROM_THE_API


@dataclass(frozen=True)
class Flavour:
    """What differs between Chainer-API implementations.

    Attributes:
        make_link: Builds the target link from ``{path: native array}`` and
            returns it with ``{path: parameter object}``; paths may nest (``l1/W``).
        make_optimizer: ``(lr, momentum) -> optimizer`` (not set up yet).
        scaled_loss: ``[(parameter object, grad)] -> loss function`` whose
            ``backward(loss_scale=s)`` gives each parameter ``s * g``.
        save_npz, load_npz: The implementation's npz serializers.
        to_native, to_numpy: Array conversion.
        dispatch: A context manager entered around every ``update()`` (the
            reference's generic variant switches its fast paths off in it).
        optimizer_hooks: The module with the built-in hooks (``WeightDecay``, ...).
    """

    make_link: Callable[[Mapping[str, Any]], tuple[Any, dict[str, Any]]]
    make_optimizer: Callable[[float, float], Any]
    scaled_loss: Callable[[list[tuple[Any, Any]]], Callable[[], Any]]
    save_npz: Callable[[str, Any], None]
    load_npz: Callable[..., None]
    to_native: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    dispatch: Callable[[], AbstractContextManager[Any]] = nullcontext
    optimizer_hooks: Any = None


class ChainerStyleOptimizer:
    """A Chainer-API optimizer as the suite sees it: :class:`~corrmom_conformance.protocol.Optimizer`
    and every protocol of :data:`~corrmom_conformance.protocol.OPTIMIZER_PROTOCOLS`."""

    def __init__(
        self, flavour: Flavour, params: Mapping[str, np.ndarray], lr: float, momentum: float
    ) -> None:
        self._flavour = flavour
        self.link, self._params = flavour.make_link({k: flavour.to_native(v) for k, v in params.items()})
        self._names = {id(p): k for k, p in self._params.items()}
        self._dtypes = {k: np.asarray(v).dtype for k, v in params.items()}
        self.opt = flavour.make_optimizer(lr, momentum).setup(self.link)

    # -- stepping ----------------------------------------------------------

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        if getattr(self.opt, "_loss_scale", None) is None:
            for name, param in self._params.items():
                g = grads.get(name)
                if g is None:
                    param.cleargrad()
                else:
                    param.grad = self._flavour.to_native(np.asarray(g, dtype=self._dtypes[name]))
            with self._flavour.dispatch():
                self.opt.update()
            return
        scripted = [
            (self._params[name], self._flavour.to_native(np.asarray(g, dtype=self._dtypes[name])))
            for name, g in grads.items()
            if g is not None
        ]
        with self._flavour.dispatch():
            self.opt.update(self._flavour.scaled_loss(scripted))

    def params(self) -> dict[str, np.ndarray]:
        return {k: self._flavour.to_numpy(p.array) for k, p in self._params.items()}

    def state(self) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {}
        for k, p in self._params.items():
            state = p.update_rule.state
            out[k] = None if not state or state.get("v") is None else self._flavour.to_numpy(state["v"])
        return out

    @property
    def t(self) -> int:
        return int(self.opt.t)

    def rule_t(self, name: str) -> int:
        return int(self._params[name].update_rule.t)

    # -- hyperparameters -------------------------------------------------------

    def set_lr(self, lr: float) -> None:
        self.opt.lr = lr

    def set_momentum(self, momentum: float) -> None:
        self.opt.momentum = momentum

    def set_param_hyperparam(self, name: str, key: str, value: float) -> None:
        setattr(self._params[name].update_rule.hyperparam, key, value)

    # -- loss scaling and fp32 -------------------------------------------------

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        self.opt.loss_scaling(interval=interval, scale=scale)

    @property
    def loss_scale(self) -> float | None:
        scale = getattr(self.opt, "_loss_scale", None)
        return None if scale is None else float(scale)

    def use_fp32_update(self) -> None:
        self.opt.use_fp32_update()

    # -- hooks ---------------------------------------------------------------

    def add_hook(self, spec: HookSpec, record: Callable[[HookEvent], None]) -> None:
        hook = hook_from_spec(spec, record, self._hook_gradients())
        kwargs: dict[str, Any] = {"timing": spec.timing}
        if spec.name is not None:
            kwargs["name"] = spec.name
        if spec.level == "rule":
            assert spec.param is not None
            self._params[spec.param].update_rule.add_hook(hook, **kwargs)
        else:
            self.opt.add_hook(hook, **kwargs)

    def remove_hook(self, name: str, level: str = "optimizer", param: str | None = None) -> None:
        if level == "rule":
            assert param is not None
            self._params[param].update_rule.remove_hook(name)
        else:
            self.opt.remove_hook(name)

    def _hook_gradients(self) -> Gradients:
        """The parameters' gradients as hooks edit them: rebound, so the update reads what a hook left."""

        def scale(param: Any, factor: float) -> None:
            param.grad = param.grad * factor

        def add(param: Any, value: float) -> None:
            param.grad = param.grad + value

        return Gradients(
            params=self._params,
            # an fp32 master copy is not one of the link's parameters; it carries its parameter's name
            name_of=lambda param: self._names.get(id(param), getattr(param, "name", None)),
            to_numpy=self._flavour.to_numpy,
            scale=scale,
            add=add,
            clear=lambda param: param.cleargrad(),
            t=lambda: self.t,
        )

    def add_builtin_hook(self, kind: str, **kwargs: Any) -> None:
        hooks = self._flavour.optimizer_hooks
        if kind == "GradientNoise":
            noise = kwargs.pop("noise")

            def noise_func(xp: Any, shape: Any, dtype: Any, hook: Any, rule: Any) -> Any:
                return xp.asarray(noise(tuple(shape), int(rule.t)), dtype=dtype)

            kwargs["noise_func"] = noise_func
        self.opt.add_hook(getattr(hooks, kind)(**kwargs))

    def set_rule_enabled(self, name: str, enabled: bool) -> None:
        self._params[name].update_rule.enabled = enabled

    # -- serialization and epochs -------------------------------------------------

    def save(self, path: str) -> None:
        self._flavour.save_npz(path, self.opt)

    def load(self, path: str, strict: bool = True) -> None:
        self._flavour.load_npz(path, self.opt, strict=strict)

    def new_epoch(self, auto: bool = False) -> None:
        self.opt.new_epoch(auto=auto)

    @property
    def epoch(self) -> int:
        return int(self.opt.epoch)
