r"""Chainer-layout snapshots of a model sharded by FSDP2 (``fully_shard``: DTensor parameters).

FSDP2 leaves each rank a shard of every parameter, gradient and momentum
buffer (``DTensor``, placement ``Shard(0)``). The optimizer itself needs
nothing from this module: :class:`~corrmom_ref.torch.CorrectedMomentumSGD`
steps each rank's local shards (fused or not; the update is elementwise) and,
under dynamic loss scaling (:class:`~corrmom_ref.torch.LossScaler`), agrees
the overflow verdict of sharded gradients with one ``all_reduce`` (MAX) of one
number per gradient, so a NaN in one rank's shard skips the step on every rank:

.. math:: \text{skip} = \max_{r} \bigl[\exists\, i:\ g^{(r)}_i \notin \mathbb{R}\bigr].

What is left is the snapshot: :func:`save_sharded_chainer_snapshot` writes
Chainer's layout (the file :func:`~corrmom_ref.torch.save_chainer_snapshot`
writes for the unsharded model) gathering one buffer at a time (one
all-gather per parameter); :func:`load_sharded_chainer_snapshot` reads one
buffer at a time and keeps each rank's own shard (no communication).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, distribute_tensor

from corrmom_ref.serializers.chainer_layout import (
    OptimizerSnapshot,
    loss_scaling_entries,
    normalize_path,
    read_loss_scaling,
    write_npz_arrays,
)
from corrmom_ref.torch.snapshot import default_chainer_path

__all__ = [
    "load_sharded_chainer_snapshot",
    "save_sharded_chainer_snapshot",
]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor; any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _params(optimizer: Any) -> Iterator[torch.Tensor]:
    for group in optimizer.param_groups:
        yield from group["params"]


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
