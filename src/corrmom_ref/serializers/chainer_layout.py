"""Chainer's npz layout of an optimizer snapshot, as plain data (NumPy only).

``chainer.serializers.save_npz(file, optimizer)`` (and
:func:`corrmom_ref.serializers.save_npz`) write, for parameters at link paths
``W`` and ``l1/W``::

    t, epoch, W/t, W/v, l1/W/t, l1/W/v

(``<path>/t`` the parameter's update count, the other ``<path>/<name>`` its
state; a parameter never updated has only ``<path>/t``). corrmom_ref adds
``loss_scaling.*`` keys, which Chainer ignores. :func:`read_optimizer_npz`
turns such a file into an :class:`OptimizerSnapshot` and
:func:`write_optimizer_npz` writes one back, so framework integrations
(:mod:`corrmom_ref.torch`, the optax one) convert only between this and their
own state; :func:`read_loss_scaling` and :func:`loss_scaling_entries` do the same
for the loss-scaling keys. Paths here never start with ``/`` (:func:`normalize_path` strips
the one Chainer's ``namedparams()`` puts there).

Files go through the same machinery as :func:`corrmom_ref.serializers.load_npz`
and :func:`~corrmom_ref.serializers.save_npz`: a read never unpickles and checks
each member's declared size before inflating it (:func:`read_npz_arrays`), and a
write to a path replaces the file atomically, so an interrupted save leaves the
previous snapshot intact (:func:`write_npz_arrays`; ``docs/reliability.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "LOSS_SCALING_KEYS",
    "OptimizerSnapshot",
    "ParamSnapshot",
    "loss_scaling_entries",
    "normalize_path",
    "read_loss_scaling",
    "read_npz_arrays",
    "read_optimizer_npz",
    "write_npz_arrays",
    "write_optimizer_npz",
]

#: corrmom_ref's extra keys for the loss-scaling state (Chainer saves none and ignores them).
LOSS_SCALING_KEYS = {
    "scale": "loss_scaling.scale",
    "dynamic": "loss_scaling.dynamic",
    "interval": "loss_scaling.interval",
    "nonfinite_ever": "loss_scaling.nonfinite_ever",
}

File = str | os.PathLike[str] | BinaryIO


@dataclass
class ParamSnapshot:
    """One parameter's saved update rule."""

    #: Updates the parameter received.
    t: int
    #: Its state arrays by name (``{'v': ...}``; empty before its first update).
    state: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class OptimizerSnapshot:
    """A whole optimizer snapshot in Chainer's layout."""

    #: Optimizer steps.
    t: int
    #: Epochs.
    epoch: int
    #: By parameter path (``'l1/W'``).
    params: dict[str, ParamSnapshot] = field(default_factory=dict)
    #: Every other top-level key (corrmom_ref's ``loss_scaling.*``), as stored.
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def normalize_path(path: str) -> str:
    """``'/l1/W'`` -> ``'l1/W'``; ``ValueError`` for an empty path."""
    stripped = path.strip("/")
    if not stripped:
        raise ValueError(f"empty parameter path {path!r}")
    return stripped


def read_npz_arrays(file: File, prefix: str = "") -> dict[str, np.ndarray]:
    """The arrays of an npz file whose keys start with ``prefix``, keyed without it.

    Members outside ``prefix`` are never inflated; each one read is checked
    against the size its headers declare before its data is.

    Raises:
        ValueError: the file is not an npz archive, or a member is damaged,
            truncated or would need a pickle (the message names the key).
    """
    from corrmom_ref.serializers._archive import NpzArchive

    with NpzArchive(file) as archive:
        return {key[len(prefix) :]: archive[key].read() for key in archive if key.startswith(prefix)}


def write_npz_arrays(file: File, arrays: dict[str, Any], compression: bool = True) -> None:
    """Write ``arrays`` as an npz file (never a pickle); a path is replaced atomically.

    Raises:
        TypeError: an array would need a pickle (object dtype), before the
            file is touched.
    """
    from corrmom_ref.serializers._archive import check_storable, write_npz
    from corrmom_ref.serializers._atomic import replace_file

    stored = {key: np.asarray(value) for key, value in arrays.items()}
    check_storable(stored)
    if isinstance(file, (str, os.PathLike)):
        replace_file(file, lambda out: write_npz(out, stored, compression))
    else:
        write_npz(file, stored, compression)


def read_optimizer_npz(file: File, path: str = "") -> OptimizerSnapshot:
    """Read an optimizer snapshot; ``path`` selects a prefix (``'updater/optimizer:main/'``).

    A parameter is every ``P`` with a key ``P/t``; its state is every other
    ``P/<name>`` whose ``<name>`` has no ``/``.

    Raises:
        KeyError: ``t`` or ``epoch`` is missing under ``path``.
        ValueError: a counter is not an integer scalar.
    """
    keys = read_npz_arrays(file, path)
    for counter in ("t", "epoch"):
        if counter not in keys:
            raise KeyError(f"no {path + counter!r} in the snapshot (is {path!r} the optimizer's prefix?)")
    params = {k[: -len("/t")]: ParamSnapshot(_to_int(keys[k], path + k)) for k in keys if k.endswith("/t")}
    extra: dict[str, np.ndarray] = {}
    for key, value in keys.items():
        if key in ("t", "epoch") or (key.endswith("/t") and key[:-2] in params):
            continue
        owner, _, name = key.rpartition("/")
        if owner in params:
            params[owner].state[name] = value
        else:
            extra[key] = value
    return OptimizerSnapshot(
        _to_int(keys["t"], path + "t"), _to_int(keys["epoch"], path + "epoch"), params, extra
    )


def write_optimizer_npz(file: File, snapshot: OptimizerSnapshot, compression: bool = True) -> None:
    """Write ``snapshot`` in Chainer's layout (compressed like Chainer's ``save_npz`` by default)."""
    out: dict[str, Any] = {"t": np.asarray(snapshot.t), "epoch": np.asarray(snapshot.epoch)}
    for name, param in snapshot.params.items():
        key = normalize_path(name)
        out[f"{key}/t"] = np.asarray(param.t)
        for state_name, value in param.state.items():
            out[f"{key}/{state_name}"] = np.asarray(value)
    for key, value in snapshot.extra.items():
        out[key] = np.asarray(value)
    write_npz_arrays(file, out, compression)


def loss_scaling_entries(
    *, scale: float, dynamic: bool, interval: int, nonfinite_ever: bool
) -> dict[str, np.ndarray]:
    r"""The ``loss_scaling.*`` entries of :attr:`OptimizerSnapshot.extra` for this state
    (:meth:`corrmom_ref.loss_scaling.LossScaling.snapshot_entries`).

    ``nonfinite_ever``: whether any step had a non-finite gradient (after which
    the dynamic scale grows by :math:`2^{1/\mathrm{interval}}` per clean step).
    """
    from corrmom_ref.loss_scaling import LossScaling, SavedLossScaling

    state = LossScaling()
    state.restore(SavedLossScaling(bool(dynamic), float(scale), int(interval), bool(nonfinite_ever)))
    return {key: np.asarray(value) for key, value in state.snapshot_entries().items()}


def read_loss_scaling(snapshot: OptimizerSnapshot, path: str = "") -> dict[str, Any]:
    """The loss-scaling state in ``snapshot.extra`` as ``{scale, dynamic, interval, nonfinite_ever}``;
    ``{}`` when there is none (Chainer's snapshots, or a run without loss scaling).

    Read and checked by :meth:`corrmom_ref.loss_scaling.LossScaling.read_entries`.
    A static scale saved without an interval reads as interval 1000 (Chainer's default).

    Raises:
        KeyError: some ``loss_scaling.*`` keys are there and a needed one is not
            (``path`` prefixes the key in the message).
        TypeError, ValueError: a value of the wrong kind or out of range (named by its key).
    """
    from corrmom_ref.loss_scaling import LossScaling

    saved = LossScaling.read_entries(snapshot.extra, path)
    if saved is None or saved.scale is None:
        return {}
    return {
        "scale": float(saved.scale),
        "dynamic": saved.dynamic,
        "interval": 1000 if saved.interval is None else saved.interval,
        "nonfinite_ever": saved.nonfinite_ever,
    }


def _to_int(value: np.ndarray, key: str) -> int:
    array = np.asarray(value)
    if array.shape != () or not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        if array.shape == () and np.issubdtype(array.dtype, np.floating) and float(array).is_integer():
            return int(array)
        raise ValueError(f"{key}: expected an integer scalar, got {array.dtype} of shape {array.shape}")
    return int(array)
