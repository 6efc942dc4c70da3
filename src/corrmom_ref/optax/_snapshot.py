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

The whole optax state round-trips. Every array leaf of the state that is
neither a :class:`~corrmom_ref.optax.MomentumState` nor a
:class:`~corrmom_ref.optax.LossScalingState` field (the count and the
hyperparameters of ``optax.inject_hyperparams``, a schedule's count, another
transformation's state) is saved under ``optax.<pytree path>``
(``optax.hyperparams/learning_rate``; keys Chainer ignores), with their
number under ``optax:leaves`` (a state without such leaves is saved in
Chainer's layout exactly), and restored by :func:`load_chainer_snapshot`,
checked against the state's own leaf (same shape and dtype). A leaf that is
not an array (a Python number, a PRNG key) cannot be represented: the save
refuses it naming its pytree path, before the file is touched. A snapshot
written here (it has ``optax:leaves``) must hold every such leaf of the state
it is loaded into (under ``strict``; ``strict=False`` keeps the state's own
value); a snapshot without ``optax:leaves`` (Chainer's, or the reference's
``serializers.save_npz``) holds no optax state, and those leaves keep the
state's own values, as Chainer keeps what its snapshots do not hold.

What stays true: :func:`load_chainer_snapshot` returns a new state and
changes nothing when it raises; a snapshot saved by :func:`save_chainer_snapshot`
and loaded back gives a state equal to the saved one (the epoch aside, which
optax does not keep), so the next step is the same; and a Chainer snapshot
loaded into :func:`~corrmom_ref.optax.corrected_momentum_sgd`'s state makes
the next step Chainer's next step.

The file is read by the reader of :func:`corrmom_ref.serializers.load_npz`
(:func:`~corrmom_ref.serializers.chainer_layout.open_optimizer_npz`) and held
to the reference's rules, so a file the reference refuses is refused here
too: counters must be integers in ``[0, 2**63 - 1]`` that fit the state's
``int32`` counts, a buffer must have its leaf's shape and dtype (never a
cast), and only the members the state asks for are read, each checked from
its header before its data is. Every file that cannot be loaded raises
:class:`~corrmom_ref.serializers.SnapshotError` naming the file and key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np
import optax

from corrmom_ref.optax._loss_scaling import LossScalingState
from corrmom_ref.optax._momentum import MomentumState
from corrmom_ref.optax._paths import chainer_path, plain_key
from corrmom_ref.serializers.chainer_layout import (
    OptimizerSnapshot,
    open_optimizer_npz,
    read_loss_scaling,
    read_state,
    write_npz_arrays,
)

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


#: Prefix of the keys of the state's other leaves (Chainer ignores them).
OTHER_PREFIX = "optax."
#: The key of their number, written by every save (no pytree path gives it).
OTHER_COUNT_KEY = "optax:leaves"


def _map_other_leaves(
    fn: Callable[[tuple[Any, ...], Any], Any], state: Any, prefix: tuple[Any, ...] = ()
) -> Any:
    """``state`` with ``fn(path, leaf)`` for each leaf outside the momentum and loss-scaling states
    (whose fields have Chainer's keys); a loss-scaling state's ``inner_state`` is visited."""

    def visit(path: tuple[Any, ...], node: Any) -> Any:
        full = prefix + tuple(path)
        if isinstance(node, MomentumState):
            return node
        if isinstance(node, LossScalingState):
            inner = (jax.tree_util.GetAttrKey("inner_state"),)
            return node._replace(inner_state=_map_other_leaves(fn, node.inner_state, full + inner))
        return fn(full, node)

    return jax.tree_util.tree_map_with_path(
        visit, state, is_leaf=lambda x: isinstance(x, (MomentumState, LossScalingState))
    )


def _other_key(path: tuple[Any, ...]) -> str:
    return OTHER_PREFIX + ("/".join(str(plain_key(k)) for k in path) or "state")


def _other_leaves(state: optax.OptState) -> dict[str, np.ndarray]:
    """``{optax.<path>: array}`` of the state's other leaves; a leaf that is not an array of
    numbers (or two paths with one key) raises ``ValueError`` naming its pytree path."""
    found: dict[str, np.ndarray] = {}

    def keep(path: tuple[Any, ...], leaf: Any) -> Any:
        key = _other_key(path)
        shown = tuple(plain_key(k) for k in path)
        array = None
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            try:
                array = np.asarray(leaf)
            except (TypeError, ValueError):
                array = None
        if array is None or array.dtype.kind not in "biufc":
            raise ValueError(
                f"save_chainer_snapshot: the optax state's leaf at pytree path {shown!r} is a "
                f"{type(leaf).__name__} ({getattr(leaf, 'dtype', '')}), which a snapshot cannot "
                "represent (only arrays of numbers are saved); nothing was written"
            )
        if key in found:
            raise ValueError(
                f"save_chainer_snapshot: two leaves of the optax state would be saved as {key!r}"
            )
        found[key] = array
        return leaf

    _map_other_leaves(keep, state)
    return found


def save_chainer_snapshot(
    file: File, state: optax.OptState, *, paths: PathMapping | None = None, epoch: int = 0
) -> None:
    """Write ``state`` as Chainer's ``save_npz(file, optimizer)`` would (compressed npz).

    Keys: ``t`` (the :class:`~corrmom_ref.optax.LossScalingState` count if
    there is one, else the update count), ``epoch`` (the argument: optax keeps
    no epoch), ``<path>/t`` and ``<path>/v`` for every parameter, with loss
    scaling corrmom_ref's ``loss_scaling.*`` keys, and ``optax.<pytree path>``
    for every other leaf of the state, with their number under ``optax:leaves``
    if there are any (Chainer ignores these; see the module docstring).

    Args:
        file: A path or a binary file.
        state: An optax state holding one or more :class:`~corrmom_ref.optax.MomentumState`.
        paths: Chainer path -> pytree path (default: :func:`chainer_path`).
        epoch: The value to write under ``epoch``.

    Raises:
        ValueError: ``state`` holds no momentum state, two hold one parameter,
            or a leaf cannot be represented (naming its pytree path); nothing
            is written.
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
    others = _other_leaves(state)
    if others:  # a state of momentum and loss scaling alone keeps Chainer's layout exactly
        arrays.update(others)
        arrays[OTHER_COUNT_KEY] = np.asarray(len(others))
    write_npz_arrays(file, arrays)


def snapshot_loss_scaling(file: File) -> dict[str, Any] | None:
    """The loss-scaling configuration a snapshot records, as keyword arguments of
    :func:`~corrmom_ref.optax.loss_scaling` (``{'interval': 2}`` or ``{'scale': 128.0}``);
    ``None`` for a snapshot without one (Chainer's).

    Raises:
        SnapshotError: the file cannot be read, or its ``loss_scaling.*`` keys are refused.
    """
    with open_optimizer_npz(file) as snapshot:
        stored = read_loss_scaling(snapshot)
    if not stored:
        return None
    if stored["dynamic"]:
        return {"interval": int(stored["interval"])}
    return {"scale": float(stored["scale"])}


def _count(value: int, like: Any, key: str) -> Any:
    """The counter ``value`` (checked by the reader) as an array of ``like``'s integer dtype,
    refused naming ``key`` when it does not fit (JAX would raise ``OverflowError``)."""
    dtype = np.dtype(like.dtype)
    if value > np.iinfo(dtype).max:
        raise ValueError(f"{key!r}: {value} does not fit the optax state's {dtype} count")
    return jnp.asarray(value, dtype)


def _real(value: float, like: Any, key: str) -> Any:
    """``value`` as an array of ``like``'s float dtype, refused naming ``key`` when the cast
    would turn a nonzero value into 0 or a finite one into infinity."""
    dtype = np.dtype(like.dtype)
    with np.errstate(over="ignore", under="ignore"):
        cast = np.asarray(value, dtype=dtype)
    if (value != 0 and cast == 0) or (np.isfinite(value) and not np.isfinite(cast)):
        raise ValueError(f"{key!r}: {value!r} becomes {cast.item()!r} in the optax state's {dtype}")
    return jnp.asarray(cast, dtype)


def load_chainer_snapshot(
    file: File, state: optax.OptState, *, paths: PathMapping | None = None, strict: bool = True
) -> optax.OptState:
    """``state`` with the counters, buffers, loss scale and other leaves of a Chainer (or corrmom_ref) npz snapshot.

    Each :class:`~corrmom_ref.optax.MomentumState` gets ``velocity`` from
    ``<path>/v`` and ``count`` from ``<path>/t``; a
    :class:`~corrmom_ref.optax.LossScalingState` gets ``count`` from ``t``
    and, when the snapshot has them, the scale and its history from the
    ``loss_scaling.*`` keys; every other leaf its ``optax.<pytree path>``
    key. Keys the state does not ask for are ignored (never read), as Chainer
    ignores them.

    Args:
        file: A path or a binary file.
        state: The state to fill (from ``tx.init(params)``).
        paths: Chainer path -> pytree path (default: :func:`chainer_path`).
        strict: If false, a missing key keeps the state's current value, as
            Chainer's non-strict loading does.

    Returns:
        A new state of the same structure.

    Raises:
        SnapshotError: the file cannot be loaded into ``state`` (see the
            module docstring): a missing key under ``strict`` (also a
            ``KeyError``), a value of another dtype (also a ``TypeError``) or
            shape, a counter out of range, parameters of one momentum state
            with different ``t``, a loss scaling (dynamic or static,
            interval) other than the transformation's, a damaged file.
    """
    name_of = _namer(paths)
    wanted = [
        name_of(path)
        for node in _require_momentum(state, "load_chainer_snapshot")
        for path, _ in jax.tree_util.tree_flatten_with_path(node.velocity)[0]
    ]
    with open_optimizer_npz(file, params=wanted, strict=strict) as snapshot:
        return _loaded(snapshot, state, name_of, strict)


def _loaded(
    snapshot: OptimizerSnapshot, state: optax.OptState, name_of: Callable[[Any], str], strict: bool
) -> optax.OptState:
    """``state`` filled from ``snapshot`` (inside :func:`open_optimizer_npz`: arrays unread until checked)."""

    def missing(key: str) -> None:
        if strict:
            raise KeyError(f"load_chainer_snapshot: {key!r} is not in the snapshot")

    def load_momentum(node: Any) -> Any:
        if not isinstance(node, MomentumState):
            return node
        leaves, treedef_ = jax.tree_util.tree_flatten_with_path(node.velocity)
        treedef: Any = treedef_
        velocity, counts = [], set()
        for path, v in leaves:
            name = name_of(path)
            saved = snapshot.params.get(name)
            if saved is None:
                missing(f"{name}/t")
            else:
                counts.add(saved.t)
            if saved is None or "v" not in saved.state:
                if saved is not None:
                    missing(f"{name}/v")
                velocity.append(v)
                continue
            loaded = read_state(saved.state["v"], shape=tuple(v.shape), dtypes=(v.dtype,), key=f"{name}/v")
            velocity.append(jnp.asarray(loaded, dtype=v.dtype))
        if len(counts) > 1:
            raise ValueError(
                f"load_chainer_snapshot: the parameters of one optax state need one t, the snapshot has {sorted(counts)}"
            )
        count = _count(counts.pop(), node.count, f"{name_of(leaves[0][0])}/t") if counts else node.count
        return MomentumState(count=count, velocity=treedef.unflatten(velocity))

    def load_scaling(node: Any) -> Any:
        if not isinstance(node, LossScalingState):
            return node
        if snapshot.t is not None:
            node = node._replace(count=_count(snapshot.t, node.count, "t"))
        stored = scaling
        if not stored:
            return node  # Chainer's snapshot: the scale is not saved, keep the current one
        interval = int(stored["interval"]) if stored["dynamic"] else 0
        if interval != int(node.interval):
            want = f"loss_scaling(..., interval={interval})" if stored["dynamic"] else "static loss_scaling"
            raise ValueError(
                f"load_chainer_snapshot: the snapshot's loss scaling needs {want}, the state's has "
                f"interval {int(node.interval)} (0: static); see snapshot_loss_scaling"
            )
        return node._replace(
            scale=_real(float(stored["scale"]), node.scale, "loss_scaling.scale"),
            nonfinite_ever=jnp.asarray(bool(stored["nonfinite_ever"]), node.nonfinite_ever.dtype),
        )

    def load_other(path: tuple[Any, ...], leaf: Any) -> Any:
        key = _other_key(path)
        if key not in snapshot.extra:
            if strict and OTHER_COUNT_KEY in snapshot.extra:
                raise KeyError(
                    f"load_chainer_snapshot: {key!r} is not in the snapshot (the optax state's leaf at "
                    f"pytree path {tuple(plain_key(k) for k in path)!r}: the snapshot was saved from "
                    "another state; strict=False keeps the state's own value)"
                )
            return leaf
        loaded = read_state(snapshot.extra[key], shape=tuple(leaf.shape), dtypes=(leaf.dtype,), key=key)
        return jnp.asarray(loaded, dtype=leaf.dtype)

    scaling = read_loss_scaling(snapshot)  # checked whether or not the state scales, as the reference does
    loaded = jax.tree.map(load_momentum, state, is_leaf=lambda x: isinstance(x, MomentumState))
    loaded = jax.tree.map(load_scaling, loaded, is_leaf=lambda x: isinstance(x, LossScalingState))
    return _map_other_leaves(load_other, loaded)
