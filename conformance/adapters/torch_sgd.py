"""``--impl=torch``: ``torch.optim.SGD(momentum=...)``, with ``torch.amp.GradScaler`` for loss scaling.

PyTorch's SGD is eq. (9) (``b = m b + g; p -= lr b``) but its buffer is
created from the first gradient seen *with momentum on*, parameters with a
``None`` gradient are skipped, and it has no step counters or Chainer hooks.
Dynamic loss scaling maps Chainer's ``loss_scaling(interval)`` to
``GradScaler(init_scale=1, growth_factor=2, backoff_factor=0.5,
growth_interval=interval)``: a different policy, declared in
``expected_deviations/torch.toml``. The exposed state is ``-b`` (the
adapter converts to Chainer's sign). One parameter group per parameter
gives per-parameter hyperparameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["TorchAdapter", "factory"]

CAPABILITIES = frozenset({
    "eq9", "state", "chainer_sign", "per_param_hyperparams", "dynamic_loss_scaling",
    "static_loss_scaling", "nan_skipping", "serialize",
})


class TorchRun:
    """A :class:`conformance.protocol.Run` over ``torch.optim.SGD``."""

    def __init__(self, torch: Any, params: Mapping[str, np.ndarray], lr: float, momentum: float) -> None:
        self._torch = torch
        self.param = {n: torch.nn.Parameter(torch.asarray(np.array(params[n], copy=True)))
                      for n in sorted(params)}
        self.opt = torch.optim.SGD([{"params": [p]} for p in self.param.values()], lr=lr, momentum=momentum)
        self._groups = dict(zip(self.param, self.opt.param_groups, strict=True))
        self._own: dict[str, set[str]] = {n: set() for n in self.param}
        self._scaler: Any = None
        self._static: float | None = None

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        torch = self._torch
        scale = self.loss_scale() or 1.0
        for n, p in self.param.items():
            g = grads.get(n)
            p.grad = None if g is None else torch.asarray(np.array(g, copy=True)) * scale
        if self._scaler is not None:
            self._scaler.step(self.opt)
            self._scaler.update()
            return
        if self._static is not None:
            for p in self.param.values():
                if p.grad is not None:
                    p.grad /= self._static
        self.opt.step()

    def params(self) -> dict[str, np.ndarray]:
        return {n: p.detach().numpy().copy() for n, p in self.param.items()}

    def _set(self, key: str, value: float, name: str | None) -> None:
        if name is not None:
            self._groups[name][key] = value
            self._own[name].add(key)
            return
        for n, group in self._groups.items():
            if key not in self._own[n]:
                group[key] = value

    def set_lr(self, lr: float, name: str | None = None) -> None:
        self._set("lr", lr, name)

    def set_momentum(self, momentum: float, name: str | None = None) -> None:
        self._set("momentum", momentum, name)

    def velocity(self, name: str) -> np.ndarray | None:
        buf = self.opt.state.get(self.param[name], {}).get("momentum_buffer")
        return None if buf is None else -buf.detach().numpy().copy()

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        if scale is None:
            self._scaler = self._torch.amp.GradScaler("cpu", init_scale=1.0, growth_factor=2.0,
                                                      backoff_factor=0.5, growth_interval=interval)
        else:
            self._static = float(scale)

    def loss_scale(self) -> float | None:
        if self._scaler is not None:
            return float(self._scaler.get_scale())
        return self._static

    def save(self, path: str) -> None:
        self._torch.save(self.opt.state_dict(), path)

    def load(self, path: str, strict: bool = True) -> None:
        self.opt.load_state_dict(self._torch.load(path))

    def native(self) -> Any:
        return self.opt

    def _absent(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("not declared by the torch adapter")

    t = rule_t = add_hook = remove_hook = call_hooks = new_epoch = epoch = _absent


class TorchAdapter:
    """``torch.optim.SGD`` as an :class:`conformance.protocol.Adapter`."""

    name = "torch"
    capabilities = CAPABILITIES

    def __init__(self, backend: str) -> None:
        import torch

        self._torch = torch
        self.version = torch.__version__
        self.backend = "torch"

    def __repr__(self) -> str:
        return f"<torch.optim.SGD {self.version}>"

    def make(self, params: Mapping[str, np.ndarray], lr: float, momentum: float,
             fp32_update: bool = False) -> TorchRun:
        return TorchRun(self._torch, params, lr, momentum)


def factory(backend: str = "numpy") -> TorchAdapter:
    """The ``--impl=torch`` adapter (``--backend`` is ignored: tensors are torch's)."""
    return TorchAdapter(backend)
