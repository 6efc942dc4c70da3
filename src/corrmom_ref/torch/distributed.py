r"""Chainer's momentum SGD and loss scaling under FSDP2 (``fully_shard``: DTensor parameters).

FSDP2 leaves each rank a shard of every parameter, gradient and momentum
buffer (``DTensor``, placement ``Shard(0)``). The update of
:class:`~corrmom_ref.torch.CorrectedMomentumSGD` is elementwise, so a rank
that steps its own shards with its own shard of the averaged gradient
computes exactly the bits one process would compute on the whole tensors.
Two things are not elementwise:

* **The overflow verdict.** Dynamic loss scaling skips a step when *any*
  gradient element is not finite; under FSDP2 each rank sees only its
  shard, so a rank-local check skips the step on one rank and applies it on
  another, and the ranks drift apart without an error (PyTorch ships
  ``ShardedGradScaler`` for this). :class:`ShardedLossScaler` checks the
  local shards and agrees on the verdict with one ``all_reduce`` (MAX) of a
  single number, so a NaN in one rank's shard skips the step on every rank:

  .. math:: \text{skip} = \max_{r} \bigl[\exists\, i:\ g^{(r)}_i \notin \mathbb{R}\bigr].

* **The snapshot.** :func:`save_sharded_chainer_snapshot` writes Chainer's
  layout (the file :func:`~corrmom_ref.torch.save_chainer_snapshot` writes
  for the unsharded model) gathering one buffer at a time (one all-gather
  per parameter); :func:`load_sharded_chainer_snapshot` reads one buffer at
  a time and keeps each rank's own shard (no communication).

What the optimizer needs (a requirement, checked by
:meth:`ShardedLossScaler.step`): ``fused=False``. Its fused kernel,
``torch._fused_sgd_``, has no DTensor sharding rule (``NotImplementedError:
Operator aten._fused_sgd_.default does not have a sharding strategy
registered``). Its own finite check (``step(check_finite=True)``, what the
plain :class:`~corrmom_ref.torch.LossScaler` asks for) is not sharding-aware
either: use :class:`ShardedLossScaler`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, distribute_tensor

from corrmom_ref._finite import all_finite
from corrmom_ref.serializers.chainer_layout import (
    OptimizerSnapshot,
    loss_scaling_entries,
    normalize_path,
    read_loss_scaling,
    write_npz_arrays,
)
from corrmom_ref.torch.scaler import LossScaler
from corrmom_ref.torch.snapshot import default_chainer_path

__all__ = [
    "ShardedLossScaler",
    "agreed_nonfinite",
    "load_sharded_chainer_snapshot",
    "save_sharded_chainer_snapshot",
]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor; any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _params(optimizer: Any) -> Iterator[torch.Tensor]:
    for group in optimizer.param_groups:
        yield from group["params"]


def agreed_nonfinite(optimizer: Any, group: Any = None) -> bool:
    """Whether any rank of ``group`` holds a non-finite element in its shard of any gradient.

    Each rank checks its local shards (no DTensor collective), then one
    ``all_reduce`` with ``MAX`` of one number: every rank returns the same.
    Collective: every rank of ``group`` must call it.
    """
    grads = [_local(p.grad) for p in _params(optimizer) if p.grad is not None]
    mine = not all_finite(grads)
    device = grads[0].device if grads else torch.device("cpu")
    flag = torch.tensor([1.0 if mine else 0.0], dtype=torch.float32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    return bool(flag.item() > 0)


class _AgreedStep:
    """Stands in for the optimizer inside :meth:`~corrmom_ref.torch.LossScaler.step`: steps or skips on the agreed verdict."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.overflow = False
        self.last_step_skipped = False

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups  # type: ignore[no-any-return]

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        opt = self.optimizer
        if not (kwargs.get("check_finite") and self.overflow):
            kwargs["check_finite"] = False  # the verdict was agreed already: finite on every rank
            out = opt.step(closure, **kwargs)
            self.last_step_skipped = False
            return out
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        local = [n for n, p in _named(opt) if p.grad is not None and not all_finite([_local(p.grad)])]
        where = ", ".join(local) if local else "none here: on another rank"
        warnings.warn(
            f"Non finite number found in the gradients of this rank's shards of {where} "
            f"(iteration: {opt.t}, loss_scale: {kwargs.get('loss_scale')}); the step is skipped on every rank",
            stacklevel=4,
        )
        opt.t += 1  # a skipped step still counts, as in Chainer
        opt.last_step_skipped = True
        self.last_step_skipped = True
        return loss


def _named(optimizer: Any) -> Iterator[tuple[str, torch.Tensor]]:
    for gi, group in enumerate(optimizer.param_groups):
        names = group.get("param_names")
        for pi, p in enumerate(group["params"]):
            yield (names[pi] if names is not None else f"param {pi} of group {gi}"), p


class ShardedLossScaler:
    """:class:`~corrmom_ref.torch.LossScaler` for sharded gradients: the overflow verdict agreed by all ranks.

    Used as the plain scaler (``scale(loss).backward()``, ``step(optimizer)``,
    ``update()``, ``state_dict()``); with dynamic scaling :meth:`step` first
    agrees on the verdict (:func:`agreed_nonfinite`: one ``all_reduce`` of
    one number), then either runs the optimizer's step without its own
    check or skips it on every rank (``t`` advances, ``last_step_skipped``
    is set, a warning names this rank's non-finite shards). Every rank's
    scale then moves the same way.

    Unlike the optimizer's own skipped step, a step skipped here does not
    call the optimizer's Chainer hooks (``add_hook``); their effect on a
    skipped step is on gradients that are discarded anyway.

    Args:
        interval, scale, enabled: As for :class:`~corrmom_ref.torch.LossScaler`.
        group: The process group to agree over (default: the world).
    """

    def __init__(
        self, interval: int = 1000, scale: float | None = None, *, enabled: bool = True, group: Any = None
    ) -> None:
        self.scaler = LossScaler(interval, scale, enabled=enabled)
        self.group = group
        self._proxies: dict[int, _AgreedStep] = {}

    def _proxy(self, optimizer: Any) -> _AgreedStep:
        proxy = self._proxies.get(id(optimizer))
        if proxy is None or proxy.optimizer is not optimizer:
            proxy = self._proxies[id(optimizer)] = _AgreedStep(optimizer)
        return proxy

    def is_enabled(self) -> bool:
        """Whether scaling is on."""
        return self.scaler.is_enabled()

    @property
    def dynamic(self) -> bool:
        """Whether the scale follows Chainer's dynamic rule."""
        return self.scaler.dynamic

    def get_scale(self) -> float:
        """The current scale (the same on every rank)."""
        return self.scaler.get_scale()

    def scale(self, outputs: Any) -> Any:
        """``outputs`` times the current scale."""
        return self.scaler.scale(outputs)

    def unscale_(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the scale now (see :meth:`~corrmom_ref.torch.LossScaler.unscale_`)."""
        self.scaler.unscale_(self._proxy(optimizer))

    def step(self, optimizer: Any, closure: Callable[[], Any] | None = None) -> Any:
        """The optimizer's step, or a skip on every rank if any rank's shard overflowed (collective).

        Raises:
            ValueError: ``optimizer.fused`` with DTensor parameters (the
                fused kernel has no sharding rule), before anything changes.
        """
        if getattr(optimizer, "fused", False) and any(isinstance(p, DTensor) for p in _params(optimizer)):
            raise ValueError(
                "the optimizer's fused kernel (torch._fused_sgd_) cannot step DTensor parameters "
                "(it has no sharding strategy); build the optimizer with fused=False"
            )
        proxy = self._proxy(optimizer)
        proxy.overflow = (
            self.scaler.is_enabled() and self.scaler.dynamic and agreed_nonfinite(optimizer, self.group)
        )
        return self.scaler.step(proxy, closure)

    def update(self, new_scale: float | None = None) -> None:
        """Move the scale once per iteration (see :meth:`~corrmom_ref.torch.LossScaler.update`); the same on every rank."""
        self.scaler.update(new_scale)

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`~corrmom_ref.torch.LossScaler.state_dict` (the same on every rank)."""
        return self.scaler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As :meth:`~corrmom_ref.torch.LossScaler.load_state_dict`."""
        self.scaler.load_state_dict(state_dict)


def _paths(optimizer: Any, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{chainer path: parameter}`` for the optimizer's parameters, named by ``module``."""
    held = {id(p) for p in _params(optimizer)}
    return {default_chainer_path(n): p for n, p in module.named_parameters() if id(p) in held}


def save_sharded_chainer_snapshot(
    file: Any, optimizer: Any, *, module: torch.nn.Module, scaler: Any = None, rank: int = 0
) -> None:
    """Write the optimizer of a sharded model in Chainer's layout; collective, ``rank`` writes.

    The file is the one :func:`~corrmom_ref.torch.save_chainer_snapshot`
    writes for the same model unsharded (paths from ``module``'s parameter
    names by :func:`~corrmom_ref.torch.default_chainer_path`). Each
    momentum buffer is gathered on its own (``full_tensor()``: one
    all-gather per parameter) and moved to the host at once, so no device
    holds more than one gathered buffer; the writing rank keeps the host
    copies until the file is written.
    """
    arrays: dict[str, np.ndarray] = {}
    writer = dist.get_rank() == rank
    for path, p in _paths(optimizer, module).items():
        state = optimizer.state.get(p, {})
        key = normalize_path(path)
        v = state.get("v")
        if v is not None:
            full = v.full_tensor() if isinstance(v, DTensor) else v
            if writer:
                arrays[f"{key}/v"] = full.detach().cpu().numpy().copy()
            del full
        if writer:
            arrays[f"{key}/t"] = np.asarray(int(state.get("t", 0)))
    if not writer:
        return
    arrays["t"], arrays["epoch"] = np.asarray(optimizer.t), np.asarray(optimizer.epoch)
    if scaler is not None and scaler.is_enabled():
        arrays.update(loss_scaling_entries(**scaler.state_dict()))
    write_npz_arrays(file, arrays)


def load_sharded_chainer_snapshot(
    optimizer: Any, file: Any, *, module: torch.nn.Module, scaler: Any = None
) -> bool:
    """Load a Chainer-layout snapshot into the optimizer of a sharded model; every rank reads ``file``.

    Each buffer is read (one at a time) and checked against its parameter's
    full shape, then each rank keeps its own shard (``distribute_tensor`` with
    ``src_data_rank=None``: sliced locally, no communication). Everything is
    read and checked before anything is assigned.

    Returns:
        Whether a loss scale was loaded into ``scaler``.

    Raises:
        KeyError: a parameter's ``t`` or ``v`` is missing.
        ValueError: a buffer's shape differs from its parameter's.
    """
    from corrmom_ref.serializers._archive import NpzArchive

    targets = _paths(optimizer, module)
    loaded: list[tuple[torch.Tensor, dict[str, Any]]] = []
    with NpzArchive(file) as archive:
        small = {k: archive[k].read() for k in archive if not k.endswith("/v")}
        for path, p in targets.items():
            key = normalize_path(path)
            if f"{key}/t" not in small or f"{key}/v" not in archive:
                raise KeyError(f"{key}/t or {key}/v is not in the snapshot (parameter {path!r})")
            v = archive[f"{key}/v"].read()  # one full buffer on the host at a time
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{key}/v has shape {tuple(v.shape)}, the parameter {tuple(p.shape)}")
            full = torch.as_tensor(v).to(dtype=p.dtype)
            buffer: torch.Tensor
            if isinstance(p, DTensor):  # this rank's shard, sliced here
                buffer = distribute_tensor(
                    full.to(_local(p).device), p.device_mesh, p.placements, src_data_rank=None
                )
            else:
                buffer = full.to(p.device).clone()
            loaded.append((p, {"t": int(small[f"{key}/t"]), "v": buffer}))
    snapshot = OptimizerSnapshot(int(small["t"]), int(small["epoch"]), {}, small)
    scaler_state = read_loss_scaling(snapshot) if scaler is not None else None
    for p, state in loaded:
        optimizer.state[p] = state
    optimizer.t, optimizer.epoch = snapshot.t, snapshot.epoch
    if scaler is not None and scaler_state:
        scaler.load_state_dict(scaler_state)
        return True
    return False
