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

Files are read with ``allow_pickle=False``: a crafted file cannot run code.
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
    "read_optimizer_npz",
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


def read_optimizer_npz(file: File, path: str = "") -> OptimizerSnapshot:
    """Read an optimizer snapshot; ``path`` selects a prefix (``'updater/optimizer:main/'``).

    A parameter is every ``P`` with a key ``P/t``; its state is every other
    ``P/<name>`` whose ``<name>`` has no ``/``.

    Raises:
        KeyError: ``t`` or ``epoch`` is missing under ``path``.
        ValueError: a counter is not an integer scalar.
    """
    with np.load(file, allow_pickle=False) as npz:
        keys = {k[len(path) :]: npz[k] for k in npz.files if k.startswith(path)}
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
    if compression:
        np.savez_compressed(file, **out)
    else:
        np.savez(file, **out)


def loss_scaling_entries(
    *, scale: float, dynamic: bool, interval: int, nonfinite_ever: bool
) -> dict[str, np.ndarray]:
    r"""The ``loss_scaling.*`` entries of :attr:`OptimizerSnapshot.extra` for this state.

    ``nonfinite_ever``: whether any step had a non-finite gradient (after which
    the dynamic scale grows by :math:`2^{1/\mathrm{interval}}` per clean step).
    """
    values = {
        "scale": float(scale),
        "dynamic": bool(dynamic),
        "interval": int(interval),
        "nonfinite_ever": bool(nonfinite_ever),
    }
    return {LOSS_SCALING_KEYS[k]: np.asarray(v) for k, v in values.items()}


def read_loss_scaling(snapshot: OptimizerSnapshot, path: str = "") -> dict[str, Any]:
    """The loss-scaling state in ``snapshot.extra`` as ``{scale, dynamic, interval, nonfinite_ever}``;
    ``{}`` when there is none (Chainer's snapshots, or a run without loss scaling).

    A static scale saved without an interval reads as interval 1000 (Chainer's default).

    Raises:
        KeyError: a dynamic scale without its interval (``path`` prefixes the key in the message).
        ValueError: a scale that is not positive or an interval below 1.
    """
    extra = snapshot.extra
    keys = LOSS_SCALING_KEYS
    if keys["dynamic"] not in extra or keys["scale"] not in extra:
        return {}
    dynamic = bool(np.asarray(extra[keys["dynamic"]]).item())
    if dynamic and keys["interval"] not in extra:
        raise KeyError(f"{path}{keys['interval']} is missing for a dynamic loss scale")
    state = {
        "scale": float(np.asarray(extra[keys["scale"]]).item()),
        "dynamic": dynamic,
        "interval": int(np.asarray(extra.get(keys["interval"], 1000)).item()),
        "nonfinite_ever": bool(np.asarray(extra.get(keys["nonfinite_ever"], False)).item()),
    }
    if not state["scale"] > 0 or state["interval"] < 1:
        raise ValueError(f"invalid saved loss scale {state}")
    return state


def _to_int(value: np.ndarray, key: str) -> int:
    array = np.asarray(value)
    if array.shape != () or not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        if array.shape == () and np.issubdtype(array.dtype, np.floating) and float(array).is_integer():
            return int(array)
        raise ValueError(f"{key}: expected an integer scalar, got {array.dtype} of shape {array.shape}")
    return int(array)
