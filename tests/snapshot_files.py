"""One small optimizer, its snapshot, and the three loaders that read it (tests of issue 20).

The model is one linear layer, ``l1/W`` (3, 2) and ``l1/b`` (3,), float32, as
the reference (:class:`corrmom_ref.Link`), PyTorch (``nn.Linear(2, 3)``,
``l1.weight`` and ``l1.bias``) and optax (``{'l1': {'W', 'b'}}``) hold it. Each
loader is a function of the file's path that makes a fresh :class:`Target`.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import corrmom_ref as cr

W = np.arange(6, dtype=np.float32).reshape(3, 2) / 8
B = np.array([0.5, -0.25, 1.0], np.float32)
GRAD_W = np.full((3, 2), 0.125, np.float32)
GRAD_B = np.array([0.25, 0.5, -0.5], np.float32)


def reference_optimizer() -> cr.GradientMethod:
    link = cr.Link(l1=cr.Link(W=cr.Parameter(W.copy()), b=cr.Parameter(B.copy())))
    return cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(link)


def trained_reference() -> cr.GradientMethod:
    """The reference optimizer after two steps (state ``v`` non-zero, ``t == 2``)."""
    opt = reference_optimizer()
    for _ in range(2):
        opt.target.l1.W.grad = GRAD_W.copy()
        opt.target.l1.b.grad = GRAD_B.copy()
        opt.update()
    return opt


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def members_of(opt: cr.GradientMethod) -> dict[str, bytes]:
    """``{member name: .npy bytes}`` of ``opt``'s snapshot as ``save_npz`` writes it."""
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, opt, compression=False)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zip_bytes(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip of ``members`` in order (a name may repeat: zipfile warns and writes both)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_central_directory(data: bytes, member: str, offset: int, value: bytes) -> bytes:
    """``data`` (a zip) with ``value`` written at ``offset`` of ``member``'s central directory entry."""
    raw = bytearray(data)
    at = 0
    while True:
        at = raw.index(b"PK\x01\x02", at)
        name_length = struct.unpack("<H", raw[at + 28 : at + 30])[0]
        if raw[at + 46 : at + 46 + name_length].decode() == member:
            raw[at + offset : at + offset + len(value)] = value
            return bytes(raw)
        at += 4


# -- the three loaders ---------------------------------------------------------------


@dataclass
class Target:
    """A fresh optimizer (state) and a load of one file into it."""

    #: Loads the file.
    load: Callable[[], Any]
    #: What the target holds now, as NumPy data (to check a refused load changed nothing).
    held: Callable[[], dict[str, Any]]
    #: What the load gave (the target itself, or for optax the returned state).
    result: Callable[[], dict[str, Any]]


def state_of_reference(opt: cr.GradientMethod) -> dict[str, Any]:
    out: dict[str, Any] = {"t": opt.t, "epoch": opt.epoch}
    for name, param in opt.target.namedparams():
        rule = param.update_rule
        out[f"{name}/t"] = rule.t
        state = rule.state or {}
        out[f"{name}/v"] = None if state.get("v") is None else np.asarray(state["v"]).copy()
    return out


def load_reference(path: Path) -> Target:
    opt = reference_optimizer()
    held = lambda: state_of_reference(opt)  # noqa: E731
    return Target(lambda: cr.serializers.load_npz(path, opt), held, held)


def load_torch(path: Path) -> Target:
    import torch

    import corrmom_ref.torch as crt

    module = torch.nn.Module()
    module.l1 = torch.nn.Linear(2, 3)
    with torch.no_grad():
        module.l1.weight.copy_(torch.from_numpy(W))
        module.l1.bias.copy_(torch.from_numpy(B))
    opt = crt.CorrectedMomentumSGD(module.named_parameters(), lr=0.1, momentum=0.9)

    def state() -> dict[str, Any]:
        out: dict[str, Any] = {"t": opt.t, "epoch": opt.epoch}
        for name, p in module.named_parameters():
            held = opt.state.get(p, {})
            out[f"{name}/t"] = held.get("t")
            out[f"{name}/v"] = None if held.get("v") is None else held["v"].numpy().copy()
        return out

    return Target(lambda: crt.load_chainer_snapshot(opt, path), state, state)


def load_optax(path: Path) -> Target:
    import jax
    import jax.numpy as jnp

    import corrmom_ref.optax as co

    params = {"l1": {"W": jnp.asarray(W), "b": jnp.asarray(B)}}
    state = co.corrected_momentum_sgd(0.1, 0.9).init(params)
    box = {"state": state}

    def load() -> None:
        box["loaded"] = co.load_chainer_snapshot(path, state)

    def leaves(which: str) -> dict[str, Any]:
        return {
            str(p): np.asarray(leaf).copy() for p, leaf in jax.tree_util.tree_leaves_with_path(box[which])
        }

    return Target(load, lambda: leaves("state"), lambda: leaves("loaded"))


LOADERS = {"reference": load_reference, "torch": load_torch, "optax": load_optax}
