"""Optimizer snapshots in Chainer's npz layout, to and from an optax state.

Chainer's ``save_npz(file, optimizer)`` writes ``t`` and ``epoch``, and for
each parameter path ``l1/W`` the rule's ``l1/W/t`` and state ``l1/W/v``;
corrmom_ref adds its loss-scaling keys (``loss_scaling.*``). Here a
parameter is a leaf of the pytree, named by a mapping from Chainer paths to
pytree paths; by default a pytree path ``('l1', 'W')`` is the Chainer path
``/l1/W`` (dictionary keys, attribute names and sequence indices joined
with ``/``). The mapping renames only: the arrays must already have
Chainer's shapes (a Chainer ``Linear``'s ``W`` is ``(out, in)``; a Flax
``Dense`` kernel is ``(in, out)``).

What stays true: :func:`load_chainer_snapshot` returns a new state and
changes nothing when it raises; a snapshot saved by :func:`save_chainer_snapshot`
and loaded back gives a state equal to the saved one (the epoch aside, which
optax does not keep), so the next step is the same; and a Chainer snapshot
loaded into :func:`~corrmom_ref.optax.corrected_momentum_sgd`'s state makes
the next step Chainer's next step.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np
import optax

from corrmom_ref.loss_scaling import LossScaling
from corrmom_ref.optax._loss_scaling import LossScalingState
from corrmom_ref.optax._momentum import MomentumState
from corrmom_ref.optax._paths import chainer_path, plain_key
from corrmom_ref.serializers.chainer_layout import read_npz_arrays, write_npz_arrays

__all__ = [
    "chainer_path",
    "load_chainer_snapshot",
    "save_chainer_snapshot",
    "snapshot_loss_scaling",
]

File = str | os.PathLike[str] | BinaryIO
PathMapping = Mapping[str, tuple[Hashable, ...]]


def _namer(paths: PathMapping | None) -> Any:
    """A function from a pytree key path to the npz key prefix (``'l1/W'``)."""
    if paths is None:
        return lambda path: chainer_path(path).lstrip("/")
    inverse: dict[tuple[Hashable, ...], str] = {}
    for name, tree_path in paths.items():
        key = tuple(tree_path)
        if key in inverse:
            raise ValueError(f"paths: {inverse[key]!r} and {name!r} both map to the pytree path {key!r}")
        inverse[key] = name.lstrip("/")

    def name_of(path: tuple[Any, ...]) -> str:
        key = tuple(plain_key(k) for k in path)
        if key not in inverse:
            raise KeyError(f"paths: no Chainer path is given for the parameter at pytree path {key!r}")
        return inverse[key]

    return name_of


def _momentum_states(state: optax.OptState) -> list[MomentumState]:
    return [
        n
        for n in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, MomentumState))
        if isinstance(n, MomentumState)
    ]


def _scaling_states(state: optax.OptState) -> list[LossScalingState]:
    return [
        n
        for n in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, LossScalingState))
        if isinstance(n, LossScalingState)
    ]


def _require_momentum(state: optax.OptState, where: str) -> list[MomentumState]:
    found = _momentum_states(state)
    if not found:
        raise ValueError(
            f"{where}: the optax state holds no MomentumState (from corrected_momentum_sgd or momentum_sgd)"
        )
    return found


def save_chainer_snapshot(
    file: File, state: optax.OptState, *, paths: PathMapping | None = None, epoch: int = 0
) -> None:
    """Write ``state`` as Chainer's ``save_npz(file, optimizer)`` would (compressed npz).

    Keys: ``t`` (the :class:`~corrmom_ref.optax.LossScalingState` count if
    there is one, else the update count), ``epoch`` (the argument: optax keeps
    no epoch), ``<path>/t`` and ``<path>/v`` for every parameter, and with loss
    scaling corrmom_ref's ``loss_scaling.*`` keys (Chainer ignores them).

    Args:
        file: A path or a binary file.
        state: An optax state holding one or more :class:`~corrmom_ref.optax.MomentumState`.
        paths: Chainer path -> pytree path (default: :func:`chainer_path`).
        epoch: The value to write under ``epoch``.

    Raises:
        ValueError: ``state`` holds no momentum state, or two hold one parameter.
    """
    name_of = _namer(paths)
    arrays: dict[str, np.ndarray] = {}
    counts = []
    for node in _require_momentum(state, "save_chainer_snapshot"):
        count = int(node.count)
        counts.append(count)
        for path, v in jax.tree_util.tree_flatten_with_path(node.velocity)[0]:
            name = name_of(path)
            if f"{name}/v" in arrays:
                raise ValueError(f"save_chainer_snapshot: two momentum states hold parameter {name!r}")
            arrays[f"{name}/t"] = np.asarray(count)
            arrays[f"{name}/v"] = np.asarray(v)
    scaling = _scaling_states(state)
    t = int(scaling[0].count) if scaling else max(counts)
    arrays["t"] = np.asarray(t)
    arrays["epoch"] = np.asarray(int(epoch))
    if scaling:
        s = scaling[0]
        dynamic = int(s.interval) > 0
        arrays["loss_scaling.dynamic"] = np.asarray(dynamic)
        arrays["loss_scaling.nonfinite_ever"] = np.asarray(bool(s.nonfinite_ever))
        if dynamic:
            arrays["loss_scaling.interval"] = np.asarray(int(s.interval))
        arrays["loss_scaling.scale"] = np.asarray(float(s.scale))
    write_npz_arrays(file, arrays)


def snapshot_loss_scaling(file: File) -> dict[str, Any] | None:
    """The loss-scaling configuration a snapshot records, as keyword arguments of
    :func:`~corrmom_ref.optax.loss_scaling` (``{'interval': 2}`` or ``{'scale': 128.0}``);
    ``None`` for a snapshot without one (Chainer's)."""
    saved = LossScaling.read_entries(read_npz_arrays(file))  # checked as the reference checks them
    if saved is None or (not saved.dynamic and saved.scale is None):
        return None
    if saved.dynamic:
        return {"interval": saved.interval}
    return {"scale": float(saved.scale)}


def _scalar_int(value: np.ndarray, key: str) -> int:
    value = np.asarray(value)
    if value.shape != () or value.dtype.kind not in "iu":
        raise ValueError(f"{key}: expected an integer scalar, got {value.dtype} of shape {value.shape}")
    return int(value)


def load_chainer_snapshot(
    file: File, state: optax.OptState, *, paths: PathMapping | None = None, strict: bool = True
) -> optax.OptState:
    """``state`` with the counters, buffers and loss scale of a Chainer (or corrmom_ref) npz snapshot.

    Each :class:`~corrmom_ref.optax.MomentumState` gets ``velocity`` from
    ``<path>/v`` (cast to the buffer's dtype) and ``count`` from ``<path>/t``;
    a :class:`~corrmom_ref.optax.LossScalingState` gets ``count`` from ``t``
    and, when the snapshot has them, the scale and its history from the
    ``loss_scaling.*`` keys. Keys the state does not ask for are ignored, as
    Chainer ignores them. The file is read as :func:`corrmom_ref.serializers.load_npz` reads
    one: never unpickled, each member checked against its declared size before it is inflated.

    Args:
        file: A path or a binary file.
        state: The state to fill (from ``tx.init(params)``).
        paths: Chainer path -> pytree path (default: :func:`chainer_path`).
        strict: If false, a missing key keeps the state's current value, as
            Chainer's non-strict loading does.

    Returns:
        A new state of the same structure.

    Raises:
        KeyError: ``strict`` and a key the state needs is missing.
        ValueError: A buffer's shape differs from the parameter's, the
            parameters of one momentum state have different ``t``, or the
            snapshot's loss scaling (dynamic or static, interval) is not the
            transformation's.
    """
    name_of = _namer(paths)
    _require_momentum(state, "load_chainer_snapshot")
    stored = read_npz_arrays(file)

    def read(key: str) -> np.ndarray | None:
        if key in stored:
            return stored[key]
        if strict:
            raise KeyError(f"load_chainer_snapshot: {key!r} is not in the snapshot")
        return None

    def load_momentum(node: Any) -> Any:
        if not isinstance(node, MomentumState):
            return node
        leaves, treedef_ = jax.tree_util.tree_flatten_with_path(node.velocity)
        treedef: Any = treedef_
        velocity, counts = [], set()
        for path, v in leaves:
            name = name_of(path)
            t = read(f"{name}/t")
            if t is not None:
                counts.add(_scalar_int(t, f"{name}/t"))
            loaded = read(f"{name}/v")
            if loaded is None:
                velocity.append(v)
                continue
            if loaded.shape != v.shape:
                raise ValueError(
                    f"{name}/v: shape {loaded.shape} in the snapshot, the parameter's is {v.shape}"
                )
            velocity.append(jnp.asarray(loaded, dtype=v.dtype))
        if len(counts) > 1:
            raise ValueError(
                f"load_chainer_snapshot: the parameters of one optax state need one t, the snapshot has {sorted(counts)}"
            )
        count = jnp.asarray(counts.pop(), node.count.dtype) if counts else node.count
        return MomentumState(count=count, velocity=treedef.unflatten(velocity))

    def load_scaling(node: Any) -> Any:
        if not isinstance(node, LossScalingState):
            return node
        t = read("t")
        node = node if t is None else node._replace(count=jnp.asarray(_scalar_int(t, "t"), node.count.dtype))
        saved = LossScaling.read_entries(stored)  # checked as the reference checks them
        if saved is None:
            return node  # Chainer's snapshot: the scale is not saved, keep the current one
        dynamic = saved.dynamic
        interval = saved.interval if dynamic else 0
        if interval != int(node.interval):
            want = f"loss_scaling(..., interval={interval})" if dynamic else "static loss_scaling"
            raise ValueError(
                f"load_chainer_snapshot: the snapshot's loss scaling needs {want}, the state's has "
                f"interval {int(node.interval)} (0: static); see snapshot_loss_scaling"
            )
        if saved.scale is None:
            raise KeyError("load_chainer_snapshot: 'loss_scaling.scale' is not in the snapshot")
        scale, ever = float(saved.scale), saved.nonfinite_ever
        return node._replace(
            scale=jnp.asarray(scale, node.scale.dtype),
            nonfinite_ever=jnp.asarray(ever, node.nonfinite_ever.dtype),
        )

    if strict:
        read("t")
        read("epoch")
    loaded = jax.tree.map(load_momentum, state, is_leaf=lambda x: isinstance(x, MomentumState))
    return jax.tree.map(load_scaling, loaded, is_leaf=lambda x: isinstance(x, LossScalingState))
