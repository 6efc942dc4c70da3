"""``--impl=ref-torch``: :class:`corrmom_ref.torch.CorrectedMomentumSGD` with :class:`~corrmom_ref.torch.LossScaler`.

The suite's names are Chainer paths (``l1/W``); they become the optimizer's
``param_names`` and the snapshot mapping is the identity. Parameters are
given to the optimizer in Chainer's order (a link's own parameters sorted by
name, then its child links sorted by name), one param group each (PyTorch's
way of overriding a hyperparameter for one parameter). A step scales each
gradient by the loss scale in the parameter's dtype, as backward of
``scaler.scale(loss)`` would, then runs ``scaler.step(opt); scaler.update()``.

Update-rule hooks (``level='rule'``) are the optimizer's per-parameter hooks
(:meth:`~corrmom_ref.torch.CorrectedMomentumSGD.add_param_hook`); the built-in
hooks are those of :mod:`corrmom_ref.torch.hooks` (:attr:`RefTorchAdapter.builtin_hook_kinds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from corrmom_conformance.adapters import _links
from corrmom_conformance.adapters._spec_hooks import Gradients, hook_from_spec
from corrmom_conformance.adapters.chainer_style import API_CAPABILITIES
from corrmom_conformance.protocol import HookEvent, HookSpec


def chainer_order(paths: list[str]) -> list[str]:
    """Chainer's ``params()`` order: own parameters sorted, then each child link (sorted) recursively."""

    def walk(tree: Mapping[str, Any], prefix: str) -> list[str]:
        leaves = sorted(k for k, v in tree.items() if not isinstance(v, Mapping))
        links = sorted(k for k, v in tree.items() if isinstance(v, Mapping))
        out = [prefix + k for k in leaves]
        for k in links:
            out += walk(tree[k], prefix + k + "/")
        return out

    return walk(_links.nest(dict.fromkeys(paths, 0)), "")


class RefTorchOptimizer:
    """:class:`corrmom_conformance.protocol.Optimizer` over ``corrmom_ref.torch``."""

    #: The optimizer class (``None``: ``corrmom_ref.torch.CorrectedMomentumSGD``; the meta-tests' mutants replace it).
    optimizer_class: Any = None
    #: Where the built-in hooks come from (``None``: ``corrmom_ref.torch.hooks``; mutants replace it).
    hooks_module: Any = None

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, momentum: float, fused: bool) -> None:
        import torch

        import corrmom_ref.torch as crt

        self._torch, self._crt = torch, crt
        self._names = chainer_order(list(params))
        self._params = {
            k: torch.nn.Parameter(torch.from_numpy(np.array(params[k], copy=True))) for k in self._names
        }
        self._dtypes = {k: np.asarray(params[k]).dtype for k in self._names}
        self._index = {k: i for i, k in enumerate(self._names)}
        groups = [{"params": [(k, self._params[k])]} for k in self._names]
        optimizer_class = self.optimizer_class or crt.CorrectedMomentumSGD
        # fused: the default (the kernel wherever it takes the parameters; fused=True refuses float16
        # ones, which a check may give and then move to a float32 master)
        self.opt = optimizer_class(groups, lr=lr, momentum=momentum, fused=None if fused else False)
        self._overrides: dict[str, set[str]] = {k: set() for k in self._names}
        self._scaler: Any = None
        self._by_id = {id(p): k for k, p in self._params.items()}

    # -- stepping --------------------------------------------------------------------

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        torch = self._torch
        scale = self.loss_scale
        for name, p in self._params.items():
            g = grads.get(name)
            if g is None:
                p.grad = None
                continue
            dtype = self._dtypes[name]
            scaled = np.asarray(g, dtype) if scale is None else np.asarray(g, dtype) * dtype.type(scale)
            p.grad = torch.from_numpy(np.array(scaled, dtype=dtype, copy=True))
        if self._scaler is None:
            self.opt.step()
            return
        self._scaler.step(self.opt)
        self._scaler.update()

    def params(self) -> dict[str, np.ndarray]:
        return {k: p.detach().numpy().copy() for k, p in self._params.items()}

    def set_rule_enabled(self, name: str, enabled: bool) -> None:
        """Chainer's ``rule.enabled`` is ``requires_grad`` in the port (``docs/porting.md``, "Frozen parameters")."""
        self._params[name].requires_grad_(enabled)

    def state(self) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {}
        for k, p in self._params.items():
            v = self.opt.state.get(p, {}).get("v")
            out[k] = None if v is None else v.detach().numpy().copy()
        return out

    @property
    def t(self) -> int:
        return self.opt.t

    def rule_t(self, name: str) -> int:
        return int(self.opt.state.get(self._params[name], {}).get("t", 0))

    # -- hyperparameters --------------------------------------------------------------

    def _group(self, name: str) -> dict[str, Any]:
        return self.opt.param_groups[self._index[name]]

    def set_lr(self, lr: float) -> None:
        self._set("lr", lr)

    def set_momentum(self, momentum: float) -> None:
        self._set("momentum", momentum)

    def _set(self, key: str, value: float) -> None:
        for name in self._names:
            if key not in self._overrides[name]:
                self._group(name)[key] = value

    def set_param_hyperparam(self, name: str, key: str, value: float) -> None:
        self._overrides[name].add(key)
        self._group(name)[key] = value

    # -- loss scaling and fp32 -----------------------------------------------------------

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        self._scaler = self._crt.LossScaler(interval=interval, scale=scale)

    @property
    def loss_scale(self) -> float | None:
        return None if self._scaler is None else float(self._scaler.get_scale())

    def use_fp32_update(self) -> None:
        self.opt.fp32_master = True

    # -- hooks ---------------------------------------------------------------------

    def add_hook(self, spec: HookSpec, record: Callable[[HookEvent], None]) -> None:
        hook = hook_from_spec(
            spec,
            record,
            Gradients(
                params=self._params,
                # a float16 parameter's float32 master is not one of ours: the rule's parameter
                name_of=lambda param: self._by_id.get(id(param), spec.param),
                to_numpy=lambda grad: grad.detach().numpy().copy(),
                scale=lambda param, factor: param.grad.mul_(factor),  # in place: the update reads it
                add=lambda param, value: param.grad.add_(value),
                clear=self._clear_grad,
                t=lambda: self.t,
            ),
        )
        if spec.level == "rule":
            assert spec.param is not None
            self.opt.add_param_hook(self._params[spec.param], hook, name=spec.name, timing=spec.timing)
        else:
            self.opt.add_hook(hook, name=spec.name, timing=spec.timing)

    @staticmethod
    def _clear_grad(param: Any) -> None:
        param.grad = None

    def remove_hook(self, name: str, level: str = "optimizer", param: str | None = None) -> None:
        if level == "rule":
            assert param is not None
            self.opt.remove_param_hook(self._params[param], name)
        else:
            self.opt.remove_hook(name)

    def add_builtin_hook(self, kind: str, **kwargs: Any) -> None:
        """Register ``corrmom_ref.torch.hooks.<kind>`` with its default name and timing."""
        hooks = self.hooks_module
        if hooks is None:
            import corrmom_ref.torch.hooks as hooks
        self.opt.add_hook(getattr(hooks, kind)(**kwargs))

    # -- serialization and epochs --------------------------------------------------------------

    def save(self, path: str) -> None:
        identity = {k: k for k in self._names}
        self._crt.save_chainer_snapshot(path, self.opt, names=identity, scaler=self._scaler)

    def load(self, path: str, strict: bool = True) -> None:
        identity = {k: k for k in self._names}
        scaler = self._scaler if self._scaler is not None else self._crt.LossScaler()
        if self._crt.load_chainer_snapshot(self.opt, path, names=identity, scaler=scaler, strict=strict):
            self._scaler = scaler

    def new_epoch(self, auto: bool = False) -> None:
        self.opt.new_epoch(auto=auto)

    @property
    def epoch(self) -> int:
        return self.opt.epoch


class RefTorchAdapter:
    """``corrmom_ref.torch`` as the suite sees it; ``fused=False`` is its generic variant."""

    name = "ref-torch"
    backend = "torch:cpu"
    state_sign = -1.0
    #: Every capability: ``disabled_rules`` is ``requires_grad=False``, which the port maps to
    #: Chainer's disabled update rule.
    capabilities = API_CAPABILITIES | {"generic_variant", "exact_variant"}
    #: The built-in hooks ``corrmom_ref.torch.hooks`` ships
    #: (:class:`~corrmom_conformance.protocol.DeclaresBuiltinHookKinds`): not GradientLARS, whose
    #: per-rule hyperparameters torch keeps per group, nor GradientNoise, which draws from NumPy's
    #: global random state that no torch generator reproduces.
    builtin_hook_kinds = frozenset({"WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping"})
    #: ``generic_variant`` (:class:`~corrmom_conformance.protocol.SupportsGenericVariant`):
    #: 1 with torch's fused kernel (a multiply-add per product), 0 for the generic twin.
    fast_path_roundings: float

    def __init__(self, fused: bool = True) -> None:
        import torch

        from corrmom_ref._step.kernels import torch as torch_update

        self.version = f"corrmom_ref.torch on torch {torch.__version__}"
        self._fused = fused and torch_update.available()
        self.fast_path_roundings = 1.0 if self._fused else 0.0
        if not fused:
            self.backend = "torch:cpu (generic)"
        if not self._fused:  # documented as Chainer's operations, bit for bit
            self.capabilities = self.capabilities | {"chainer_rounding"}

    def generic_variant(self) -> RefTorchAdapter:
        """The same optimizer with ``fused=False`` (Chainer's in-place operations)."""
        return RefTorchAdapter(fused=False)

    def exact_variant(self) -> RefTorchAdapter:
        """``fused=False``: documented to round as Chainer's CPU code (capability ``chainer_rounding``)."""
        return RefTorchAdapter(fused=False)

    def create(self, params: Mapping[str, np.ndarray], *, lr: float, momentum: float) -> RefTorchOptimizer:
        return RefTorchOptimizer(params, lr, momentum, self._fused)


def make_adapter() -> RefTorchAdapter:
    """Factory for ``--impl=ref-torch``."""
    return RefTorchAdapter()
