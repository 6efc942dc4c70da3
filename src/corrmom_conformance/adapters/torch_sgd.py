"""``--impl=torch``: ``torch.optim.SGD(momentum=m)``, with ``torch.amp.GradScaler`` for loss scaling.

PyTorch has no update-rule objects, hooks with Chainer's rules, npz
snapshots, epochs or float32 master copies, so those checks are not
applicable. Loss-scaling arguments go to ``GradScaler`` as given, unchecked,
so the suite's checks of them test PyTorch; PyTorch has no static scale, and
the adapter stands a ``GradScaler`` that never grows in for one. Each parameter gets its own param group, which is how PyTorch
overrides a hyperparameter for one parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class TorchSGDOptimizer:
    def __init__(self, torch: Any, params: Mapping[str, np.ndarray], lr: float, momentum: float) -> None:
        self._torch = torch
        self._params = {
            k: torch.nn.Parameter(torch.from_numpy(np.array(v, copy=True))) for k, v in params.items()
        }
        self._dtypes = {k: np.asarray(v).dtype for k, v in params.items()}
        self._groups = {k: {"params": [p], "lr": lr, "momentum": momentum} for k, p in self._params.items()}
        self.opt = torch.optim.SGD(list(self._groups.values()), lr=lr, momentum=momentum)
        self._overrides: dict[str, set[str]] = {k: set() for k in self._params}
        self._scaler: Any = None

    def _group(self, name: str) -> dict[str, Any]:
        index = list(self._params).index(name)
        return self.opt.param_groups[index]

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        torch = self._torch
        scale = self.loss_scale or 1.0
        for name, p in self._params.items():
            g = grads.get(name)
            dtype = self._dtypes[name]
            # scaled in the parameter's dtype, as backward of a scaled loss would
            p.grad = (
                None if g is None else torch.from_numpy(np.array(np.asarray(g, dtype) * dtype.type(scale)))
            )
        if self._scaler is not None:
            self._scaler.step(self.opt)
            self._scaler.update()
            return
        self.opt.step()

    def params(self) -> dict[str, np.ndarray]:
        return {k: p.detach().numpy().copy() for k, p in self._params.items()}

    def state(self) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {}
        for k, p in self._params.items():
            buf = self.opt.state.get(p, {}).get("momentum_buffer")
            out[k] = None if buf is None else buf.detach().numpy().copy()
        return out

    def set_lr(self, lr: float) -> None:
        for name in self._params:
            if "lr" not in self._overrides[name]:
                self._group(name)["lr"] = lr

    def set_momentum(self, momentum: float) -> None:
        for name in self._params:
            if "momentum" not in self._overrides[name]:
                self._group(name)["momentum"] = momentum

    def set_param_hyperparam(self, name: str, key: str, value: float) -> None:
        self._overrides[name].add(key)
        self._group(name)[key] = value

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        # Everything goes to GradScaler unvalidated: the suite checks PyTorch, not this adapter.
        # PyTorch has no static scale; the nearest is a GradScaler that never grows
        # (its backoff on an overflow stays: that is PyTorch's behaviour).
        torch = self._torch
        if scale is not None:
            self._scaler = torch.amp.GradScaler(
                "cpu", init_scale=scale, growth_factor=2.0, backoff_factor=0.5, growth_interval=2**31 - 1
            )
        else:
            self._scaler = torch.amp.GradScaler(
                "cpu", init_scale=1.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=interval
            )
        self._scaler.scale(torch.ones(()))  # creates the scale tensor

    @property
    def loss_scale(self) -> float | None:
        if self._scaler is not None:
            return float(self._scaler.get_scale())
        return None


class TorchSGDAdapter:
    """``torch.optim.SGD``; its optimizer gives ``Optimizer`` and the protocols of ``state``,
    ``hyperparams``, ``per_param_hyperparams`` and ``loss_scaling``."""

    name = "torch"
    backend = "torch:cpu"
    state_sign = 1.0
    capabilities = frozenset(
        {"hyperparams", "per_param_hyperparams", "state", "cleared_grads", "loss_scaling", "float64"}
    )

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self.version = torch.__version__

    def create(self, params: Mapping[str, np.ndarray], *, lr: float, momentum: float) -> TorchSGDOptimizer:
        return TorchSGDOptimizer(self._torch, params, lr, momentum)


def make_adapter() -> TorchSGDAdapter:
    """Factory for ``--impl=torch``."""
    return TorchSGDAdapter()
