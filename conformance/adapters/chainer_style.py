"""One adapter for every implementation with Chainer's optimizer API.

corrmom_ref mirrors Chainer 7.8.1's API, so the same :class:`ChainerStyleRun`
drives real Chainer (``--impl=chainer``) and the reference (``--impl=ref``);
only how a link of named parameters is built, how scripted gradients reach
``update(lossfun)`` and which serializers exist differ, and those live in a
:class:`ChainerStyleAPI`. A third party with a Chainer-compatible optimizer
passes its own optimizer class to :func:`ref` (see ``tests/mutants.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.backends import Backend, load_backend

__all__ = ["ChainerStyleAPI", "ChainerStyleAdapter", "ChainerStyleRun", "chainer", "ref"]

#: What both Chainer and corrmom_ref can do through this adapter.
FULL_CAPABILITIES = frozenset({
    "eq9", "state", "chainer_sign", "zero_initial_state", "cleared_grad_moves",
    "per_param_hyperparams", "float16_master", "step_counters", "dynamic_loss_scaling",
    "static_loss_scaling", "loss_scaling_validation", "nan_skipping", "serialize", "npz_layout",
    "load_chainer_npz", "hooks", "epochs",
})


@dataclass(frozen=True)
class ChainerStyleAPI:
    """The few places where Chainer and corrmom_ref differ for the suite."""

    optimizer_class: Callable[..., Any]
    make_link: Callable[[Mapping[str, Any]], tuple[Any, dict[str, Any]]]
    make_loss: Callable[[list[tuple[Any, Any]]], Any]
    save_npz: Callable[..., None]
    load_npz: Callable[..., None]


class ChainerStyleRun:
    """A :class:`conformance.protocol.Run` over a Chainer-API optimizer."""

    def __init__(self, api: ChainerStyleAPI, backend: Backend, params: Mapping[str, np.ndarray],
                 lr: float, momentum: float, fp32_update: bool) -> None:
        self._api = api
        self._backend = backend
        self.link, self.param = api.make_link({n: backend.to_backend(a) for n, a in params.items()})
        self.opt = api.optimizer_class(lr=lr, momentum=momentum)
        if fp32_update:
            self.opt.use_fp32_update()
        self.opt.setup(self.link)

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        given = [(self.param[n], self._backend.to_backend(g)) for n, g in grads.items() if g is not None]
        with np.errstate(all="ignore"):
            self.opt.update(self._api.make_loss, given)

    def params(self) -> dict[str, np.ndarray]:
        return {n: self._backend.to_host(p.array) for n, p in self.param.items()}

    def _hyperparam(self, name: str | None) -> Any:
        return self.opt.hyperparam if name is None else self.param[name].update_rule.hyperparam

    def set_lr(self, lr: float, name: str | None = None) -> None:
        self._hyperparam(name).lr = lr

    def set_momentum(self, momentum: float, name: str | None = None) -> None:
        self._hyperparam(name).momentum = momentum

    def velocity(self, name: str) -> np.ndarray | None:
        state = self.param[name].update_rule.state
        if not state or state.get("v") is None:
            return None
        return self._backend.to_host(state["v"])

    def t(self) -> int:
        return int(self.opt.t)

    def rule_t(self, name: str) -> int:
        return int(self.param[name].update_rule.t)

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        self.opt.loss_scaling(interval=interval, scale=scale)

    def loss_scale(self) -> float | None:
        scale = self.opt._loss_scale
        return None if scale is None else float(scale)

    def save(self, path: str) -> None:
        self._api.save_npz(path, self.opt)

    def load(self, path: str, strict: bool = True) -> None:
        self._api.load_npz(path, self.opt, strict=strict)

    def add_hook(self, hook: Callable[..., Any], name: str | None = None, timing: str = "auto",
                 param: str | None = None) -> None:
        owner = self.opt if param is None else self.param[param].update_rule
        owner.add_hook(hook, name=name, timing=timing)

    def remove_hook(self, name: str, param: str | None = None) -> None:
        owner = self.opt if param is None else self.param[param].update_rule
        owner.remove_hook(name)

    def call_hooks(self, timing: str = "pre") -> None:
        self.opt.call_hooks(timing)

    def new_epoch(self) -> None:
        self.opt.new_epoch()

    def epoch(self) -> int:
        return int(self.opt.epoch)

    def native(self) -> Any:
        return self.opt


class ChainerStyleAdapter:
    """An :class:`conformance.protocol.Adapter` for a :class:`ChainerStyleAPI`."""

    def __init__(self, name: str, version: str, backend: str, capabilities: frozenset[str],
                 api: ChainerStyleAPI, arrays: Backend) -> None:
        self.name, self.version, self.backend = name, version, backend
        self.capabilities = capabilities
        self.api, self.arrays = api, arrays

    def __repr__(self) -> str:
        return f"<{self.name} {self.version} on {self.backend}>"

    def make(self, params: Mapping[str, np.ndarray], lr: float, momentum: float,
             fp32_update: bool = False) -> ChainerStyleRun:
        return ChainerStyleRun(self.api, self.arrays, params, lr, momentum, fp32_update)


def ref_api(optimizer_class: Callable[..., Any] | None = None) -> ChainerStyleAPI:
    """corrmom_ref's API, optionally with another optimizer class (for variants)."""
    import corrmom_ref as cr

    def make_link(arrays: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        param = {n: cr.Parameter(a, name=n) for n, a in arrays.items()}
        return cr.Link(**param), param

    return ChainerStyleAPI(
        optimizer_class=optimizer_class or cr.CorrectedMomentumSGD,
        make_link=make_link,
        make_loss=lambda pairs: cr.ScriptedLoss(dict(pairs)),
        save_npz=cr.serializers.save_npz,
        load_npz=cr.serializers.load_npz,
    )


def ref(backend: str = "numpy", optimizer_class: Callable[..., Any] | None = None,
        name: str = "ref", capabilities: frozenset[str] = FULL_CAPABILITIES) -> ChainerStyleAdapter:
    """corrmom_ref's CorrectedMomentumSGD on ``backend``."""
    import corrmom_ref as cr

    arrays = load_backend(backend)
    if not arrays.has_float16:
        capabilities = capabilities - {"float16_master"}
    return ChainerStyleAdapter(name, cr.__version__, backend, capabilities,
                               ref_api(optimizer_class), arrays)


class _ChainerLoss:
    """``sum_p sum(p * g_p)``: its backward gives each parameter the gradient ``g_p``."""

    def __init__(self, grads: list[tuple[Any, Any]]) -> None:
        import chainer.functions as F  # noqa: N812

        self._loss = None
        for param, grad in grads:
            term = F.sum(param * grad)
            self._loss = term if self._loss is None else self._loss + term

    def backward(self, loss_scale: float | None = None) -> None:
        if self._loss is not None:
            self._loss.backward(loss_scale=loss_scale)


def chainer(backend: str = "numpy") -> ChainerStyleAdapter:
    """Real Chainer 7.8.1's CorrectedMomentumSGD (NumPy 1.x only)."""
    import chainer as ch

    if backend not in ("numpy", "numpy1"):
        raise ValueError(f"--impl=chainer runs on NumPy only, not --backend={backend}")

    def make_link(arrays: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        link = ch.Link()
        with link.init_scope():
            for n, a in arrays.items():
                setattr(link, n, ch.Parameter(a, name=n))
        return link, {n: getattr(link, n) for n in arrays}

    api = ChainerStyleAPI(
        optimizer_class=ch.optimizers.CorrectedMomentumSGD,
        make_link=make_link,
        make_loss=_ChainerLoss,
        save_npz=ch.serializers.save_npz,
        load_npz=ch.serializers.load_npz,
    )
    return ChainerStyleAdapter("chainer", ch.__version__, backend, FULL_CAPABILITIES, api,
                               load_backend("numpy1"))
