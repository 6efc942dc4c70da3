"""Chainer npz optimizer snapshots into and out of :mod:`corrmom_ref.torch` optimizers.

A Chainer parameter path maps to a PyTorch parameter name. The default
mapping (:func:`~corrmom_ref.torch.default_chainer_path`) covers the common naming:
``l1.weight`` <-> ``l1/W``, ``l1.bias`` <-> ``l1/b``, any other leaf keeps its
name (``bn.gamma`` <-> ``bn/gamma``). Chainer's ``Linear.W`` is
``(out, in)`` like ``nn.Linear.weight`` and ``Convolution2D.W`` is
``(out, in, kh, kw)`` like ``nn.Conv2d.weight``, so arrays are taken as they
are; a shape mismatch is an error naming both sides. Pass ``names``
(Chainer path -> PyTorch name) where the default does not fit, e.g.
``{'bn/gamma': 'bn.weight', 'bn/beta': 'bn.bias'}`` for batch
normalization.

PyTorch names come from ``module.named_parameters()`` when ``module`` is
given, else from the optimizer's ``param_names`` (an optimizer built from
``model.named_parameters()``).

What moves: ``t``, ``epoch``, each parameter's ``t`` and buffer ``v`` (same
sign in both), and with ``scaler`` the loss scale (extra keys Chainer
ignores; a Chainer snapshot has none, so the scaler is left as it is).
Hyperparameters and hooks are not in Chainer's snapshots.

The file is read by the reader of :func:`corrmom_ref.serializers.load_npz`
(:func:`~corrmom_ref.serializers.chainer_layout.open_optimizer_npz`), held to
the same rules, so a file the reference refuses is refused here too: counters
must be integers in ``[0, 2**63 - 1]``, a buffer must have its parameter's
shape and dtype (for a float16 parameter under ``fp32_master``, float16 or
float32, as the reference takes it; never a cast that could lose or
reinterpret a value), and only the members the optimizer asks for are read,
each checked from its header before its data is. Every file that cannot be
loaded raises :class:`~corrmom_ref.serializers.SnapshotError` naming the file
and key, and leaves the optimizer and scaler as they were.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np
import torch

from corrmom_ref._namespace import dtype_name
from corrmom_ref.serializers.chainer_layout import (
    OptimizerSnapshot,
    ParamSnapshot,
    loss_scaling_entries,
    normalize_path,
    open_optimizer_npz,
    read_loss_scaling,
    read_state,
    write_optimizer_npz,
)
from corrmom_ref.torch.optim import _ChainerMomentum
from corrmom_ref.torch.scaler import LossScaler

__all__ = ["default_chainer_path", "load_chainer_snapshot", "save_chainer_snapshot"]

File = str | os.PathLike[str] | BinaryIO

_LEAF = {"weight": "W", "bias": "b"}


def default_chainer_path(torch_name: str) -> str:
    """``'l1.weight'`` -> ``'l1/W'``, ``'l1.bias'`` -> ``'l1/b'``, ``'a.gamma'`` -> ``'a/gamma'``."""
    *links, leaf = torch_name.split(".")
    return "/".join([*links, _LEAF.get(leaf, leaf)])


def _targets(
    optimizer: _ChainerMomentum, names: Mapping[str, str] | None, module: torch.nn.Module | None
) -> dict[str, torch.Tensor]:
    """``{chainer path: parameter}`` for every parameter the optimizer holds."""
    if not isinstance(optimizer, _ChainerMomentum):
        raise TypeError(f"expected a corrmom_ref.torch optimizer, got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if module is not None:
        by_name = {n: p for n, p in module.named_parameters() if id(p) in held}
    else:
        by_name = {}
        for group in optimizer.param_groups:
            group_names = group.get("param_names")
            if group_names is None:
                raise ValueError(
                    "the optimizer's parameters have no names: build it from model.named_parameters() "
                    "or pass module="
                )
            by_name.update(zip(group_names, group["params"], strict=True))
    if names is None:
        mapping = {default_chainer_path(n): n for n in by_name}
    else:
        mapping = {normalize_path(c): n for c, n in names.items()}
        unknown = sorted(n for n in mapping.values() if n not in by_name)
        if unknown:
            raise KeyError(f"names maps to PyTorch parameters the optimizer does not hold: {unknown}")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("two Chainer paths map to one PyTorch parameter")
    return {c: by_name[n] for c, n in mapping.items()}


def load_chainer_snapshot(
    optimizer: _ChainerMomentum,
    file: File,
    *,
    names: Mapping[str, str] | None = None,
    module: torch.nn.Module | None = None,
    scaler: LossScaler | None = None,
    strict: bool = True,
    path: str = "",
) -> bool:
    """Load a Chainer (or corrmom_ref) npz optimizer snapshot into ``optimizer`` (and ``scaler``).

    Everything is read and checked before anything is assigned: a load that
    raises leaves the optimizer and scaler as they were.

    Args:
        optimizer: A :class:`~corrmom_ref.torch.CorrectedMomentumSGD` or
            :class:`~corrmom_ref.torch.MomentumSGD` over the model's parameters.
        file: The npz file.
        names: Chainer path -> PyTorch name (default: :func:`default_chainer_path`
            of every PyTorch name).
        module: Where PyTorch names come from (default: the optimizer's ``param_names``).
        scaler: Also load the loss scale, if the snapshot has one.
        strict: A missing ``t``, ``epoch``, ``<path>/t`` or ``<path>/v`` raises
            :class:`~corrmom_ref.serializers.SnapshotError` (also a ``KeyError``); if false, what is missing keeps its current value
            (as in Chainer), so a parameter without state keeps none and
            starts its buffer at zero. A frozen parameter (``requires_grad=False``,
            Chainer's disabled rule) saved without ``<path>/v`` loads its ``t`` and
            no state in either case, as Chainer loads a disabled rule.
        path: Key prefix of the optimizer inside the file.

    Returns:
        Whether a loss scale was loaded into ``scaler`` (Chainer's snapshots hold none).

    Raises:
        SnapshotError: the file cannot be loaded into the optimizer (see the module docstring):
            a missing key under ``strict`` (also a ``KeyError``), a buffer of another dtype
            (also a ``TypeError``) or shape, a counter out of range, a damaged file.
        KeyError: ``names`` names a parameter the optimizer does not hold.
    """
    targets = _targets(optimizer, names, module)
    loaded: list[tuple[torch.Tensor, dict[str, Any]]] = []
    with open_optimizer_npz(file, path, params=targets, strict=strict) as snapshot:
        for chainer_path, p in targets.items():
            saved = snapshot.params.get(chainer_path)
            if saved is not None and "v" not in saved.state and not p.requires_grad:
                # a frozen parameter is a disabled rule: Chainer loads its t and, its state
                # missing from the snapshot (never updated), leaves it without state, strict or not
                loaded.append((p, {"t": saved.t}))
                continue
            if saved is None or "v" not in saved.state:
                if strict:
                    missing = f"{path}{chainer_path}/t" if saved is None else f"{path}{chainer_path}/v"
                    raise KeyError(f"{missing} is not in the snapshot (parameter {chainer_path!r})")
                if saved is not None:  # as Chainer's non-strict load: what is missing keeps its current value
                    loaded.append((p, {**optimizer.state.get(p, {}), "t": saved.t}))
                continue
            on_master = optimizer.fp32_master and p.dtype == torch.float16
            accepted = ("float16", "float32") if on_master else (dtype_name(p.dtype),)
            v = read_state(
                saved.state["v"], shape=tuple(p.shape), dtypes=accepted, key=f"{path}{chainer_path}/v"
            )
            dtype = torch.float32 if on_master else p.dtype
            loaded.append((p, {"t": saved.t, "v": torch.from_numpy(v).to(device=p.device, dtype=dtype)}))
        # Checked with or without a scaler, as the reference checks them whatever it loads into.
        scaler_state = read_loss_scaling(snapshot, path)
        scaled = False
        if scaler is not None and scaler_state:  # last of the checks: the scaler checks before it assigns
            scaler.load_state_dict(scaler_state)
            scaled = True
    for p, state in loaded:
        optimizer.state[p] = state  # a loaded fp16 parameter rebuilds its float32 master, as in Chainer
    if snapshot.t is not None:
        optimizer.t = snapshot.t
    if snapshot.epoch is not None:
        optimizer.epoch = snapshot.epoch
    return scaled


def save_chainer_snapshot(
    file: File,
    optimizer: _ChainerMomentum,
    *,
    names: Mapping[str, str] | None = None,
    module: torch.nn.Module | None = None,
    scaler: LossScaler | None = None,
    compression: bool = True,
) -> None:
    """Write ``optimizer`` (and ``scaler``) in Chainer's npz layout; Chainer's ``load_npz`` reads it.

    Arguments as for :func:`load_chainer_snapshot`. A parameter never updated
    is written with its ``t`` only, as Chainer writes it.
    """
    targets = _targets(optimizer, names, module)
    params = {}
    for chainer_path, p in targets.items():
        state = optimizer.state.get(p, {})
        arrays = {}
        if state.get("v") is not None:
            arrays["v"] = state["v"].detach().cpu().numpy().copy()
        params[chainer_path] = ParamSnapshot(int(state.get("t", 0)), arrays)
    extra: dict[str, np.ndarray] = {}
    if scaler is not None and scaler.is_enabled():
        extra = loss_scaling_entries(**scaler.state_dict())
    write_optimizer_npz(file, OptimizerSnapshot(optimizer.t, optimizer.epoch, params, extra), compression)
