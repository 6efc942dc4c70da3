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
and :func:`~corrmom_ref.serializers.save_npz`. :func:`open_optimizer_npz` is the
reader of the PyTorch and optax loaders: it reads the counters (checked by the
reference's rules, ``corrmom_ref._scalar_checks.check_counter``) and leaves every
array unread, known by its ``.npy`` header, until the loader has checked its
shape and dtype against its target (:func:`read_state`); members the target
does not ask for are never inflated. A read never unpickles, and every file it
cannot load raises :class:`~corrmom_ref.serializers.SnapshotError` naming the
file and key. A write to a path replaces the file atomically, so an
interrupted save leaves the previous snapshot intact (:func:`write_npz_arrays`;
``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from corrmom_ref._scalar_checks import check_counter
from corrmom_ref.serializers._archive import NpzArchive, StoredArray
from corrmom_ref.serializers._errors import SnapshotError, reading
from corrmom_ref.serializers.transfer import read_loaded, to_int

__all__ = [
    "LOSS_SCALING_KEYS",
    "OptimizerSnapshot",
    "ParamSnapshot",
    "loss_scaling_entries",
    "normalize_path",
    "open_optimizer_npz",
    "read_loss_scaling",
    "read_npz_arrays",
    "read_optimizer_npz",
    "read_state",
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
    #: Its state arrays by name (``{'v': ...}``; empty before its first update); unread
    #: (:class:`~corrmom_ref.serializers._archive.StoredArray`) inside :func:`open_optimizer_npz`.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerSnapshot:
    """A whole optimizer snapshot in Chainer's layout."""

    #: Optimizer steps (``None``: missing, read by a non-strict :func:`open_optimizer_npz`).
    t: int | None
    #: Epochs (``None`` as for :attr:`t`).
    epoch: int | None
    #: By parameter path (``'l1/W'``).
    params: dict[str, ParamSnapshot] = field(default_factory=dict)
    #: Every other top-level key (corrmom_ref's ``loss_scaling.*``, the optax port's
    #: ``optax.*``), as stored; inside :func:`open_optimizer_npz` unread, except the
    #: ``loss_scaling.*`` scalars.
    extra: dict[str, Any] = field(default_factory=dict)


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


class _Unopened:
    """A member of an open archive whose header is not read yet (:meth:`open` reads it)."""

    def __init__(self, archive: NpzArchive, key: str) -> None:
        self.archive = archive
        self.key = key

    def open(self) -> StoredArray:
        """The member, known by its checked header; its data still unread."""
        return self.archive[self.key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.open(), dtype=dtype)


@contextlib.contextmanager
def open_optimizer_npz(
    file: File, path: str = "", *, params: Collection[str] | None = None, strict: bool = True
) -> Iterator[OptimizerSnapshot]:
    """The optimizer snapshot under ``path`` (``'updater/optimizer:main/'``), read lazily.

    A parameter is every ``P`` with a key ``P/t`` (only those in ``params``,
    if given); its state is every other ``P/<name>`` whose ``<name>`` has no
    ``/``. Inside the ``with`` block the counters ``t``, ``epoch`` and each
    parameter's ``t`` are read and checked (integers in ``[0, 2**63 - 1]``, as
    the reference loader holds them), those of the four ``loss_scaling.*``
    entries the file has are read once their headers say they are scalars of a
    bool or real dtype (the reference reads them whatever it loads into), and no
    other member is touched until the caller reads it with :func:`read_state`,
    which checks its header first. The file stays open until the block ends;
    ``KeyError``, ``TypeError`` and ``ValueError`` raised in the block (by
    the caller's checks of what it reads) become a
    :class:`~corrmom_ref.serializers.SnapshotError` naming the file. With
    ``strict=False`` a missing ``t`` or ``epoch`` reads as ``None`` (the
    target keeps its own, as in Chainer's non-strict load).

    Raises:
        SnapshotError: the file cannot be read, ``t`` or ``epoch`` is missing
            under ``path`` and ``strict`` (also a ``KeyError``), or a counter
            is not an integer (also a ``TypeError``) or is out of range.
    """
    with NpzArchive(file) as archive, reading(archive.name):
        keys = {key[len(path) :]: key for key in archive if key.startswith(path)}
        for counter in ("t", "epoch"):
            if counter not in keys and strict:
                raise KeyError(f"no {path + counter!r} in the snapshot (is {path!r} the optimizer's prefix?)")
        wanted = None if params is None else {normalize_path(p) for p in params}
        found = {
            k[: -len("/t")]: ParamSnapshot(_counter(archive[full], full))
            for k, full in keys.items()
            if k.endswith("/t") and (wanted is None or k[: -len("/t")] in wanted)
        }
        extra: dict[str, Any] = {}
        for key, full in keys.items():
            if key in ("t", "epoch") or (key.endswith("/t") and key[:-2] in found):
                continue
            owner, _, name = key.rpartition("/")
            if owner in found:
                found[owner].state[name] = _Unopened(archive, full)
            elif key in LOSS_SCALING_KEYS.values():
                extra[key] = _small_scalar(archive[full], full)
            else:
                extra[key] = _Unopened(archive, full)
        t, epoch = (_counter(archive[keys[c]], keys[c]) if c in keys else None for c in ("t", "epoch"))
        yield OptimizerSnapshot(t, epoch, found, extra)


def read_state(value: Any, *, shape: tuple[int, ...], dtypes: tuple[Any, ...], key: str) -> np.ndarray:
    """A state array (or other entry) of :func:`open_optimizer_npz`, checked from its header
    (exactly ``shape``, one of ``dtypes`` by name: never cast) and only then read, as a new
    NumPy array.

    Raises:
        ValueError: the shape differs (naming ``key``).
        TypeError: the dtype differs.
        SnapshotError: the member is damaged.
    """
    if isinstance(value, _Unopened):
        value = value.open()
    array: np.ndarray = read_loaded(value, shape=shape, dtypes=dtypes, what=repr(key))
    return array


def read_optimizer_npz(file: File, path: str = "") -> OptimizerSnapshot:
    """Every array of :func:`open_optimizer_npz`'s snapshot, read (for tools that edit a snapshot;
    the loaders read only what their target asks for).

    Raises:
        SnapshotError: as :func:`open_optimizer_npz`.
    """
    with open_optimizer_npz(file, path) as snapshot:
        for param in snapshot.params.values():
            param.state = {name: np.asarray(value) for name, value in param.state.items()}
        snapshot.extra = {key: np.asarray(value) for key, value in snapshot.extra.items()}
        return snapshot


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


def _counter(stored: StoredArray, key: str) -> int:
    """A counter (``t``, ``epoch``, ``<path>/t``) by the reference's rules: an integer scalar in
    ``[0, 2**63 - 1]`` (its header checked before it is read)."""
    return check_counter(to_int(stored, repr(key)), repr(key))


def _small_scalar(stored: StoredArray, key: str) -> np.ndarray:
    """A scalar of a bool or real dtype, read once its header says it is one (so at most 16 bytes)."""
    if stored.shape != ():
        raise SnapshotError(f"{key!r}: expected a scalar, got an array of shape {stored.shape}")
    if stored.dtype.kind not in "biuf":
        raise TypeError(f"{key!r}: expected a bool or a real number, got a {stored.dtype} value")
    return stored.read()
