r"""The per-step drift check of data-parallel training: every rank must step with the same numbers.

:func:`~corrmom_ref.distributed.agreement.check_same_setup` compares the
ranks once, at ``setup()``. What can change afterwards on one rank only, and
would train on silently with different parameters on the ranks, is checked
at every step by :class:`DriftCheck`: the optimizer's hyperparameters
(``opt.lr = 0.2`` on one rank), its ``t`` and ``epoch``, and the loss scale,
so a rank that loaded another snapshot with the single-process
:func:`corrmom_ref.serializers.load_npz` (another ``t``) is found too.

A parameter's own hyperparameters count too
(``param.update_rule.hyperparam.lr = 0.2`` on one rank): reading them is a
pass over every parameter, so it is done again only when some
:class:`~corrmom_ref.Hyperparameter` entry of the process was set or
deleted since the last pass (:func:`~corrmom_ref.hyperparameter.write_count`),
or at every step while one of them is not a plain number (a 0-d array could
change in place).

The check rides in the gradient allreduce: :meth:`DriftCheck.fingerprint`
is an 8-byte hash :math:`c_1 \dots c_8 \in \{0, \dots, 255\}` of those
values, and each rank adds :math:`c_i` and :math:`c_i^2` to the summed
buffer (:meth:`~corrmom_ref.distributed.MpiCommunicator.mean_grads`). The
:math:`k` ranks' bytes are all equal exactly when, on any one rank,

.. math:: \sum_r c_i^{(r)} = k\, c_i \quad\text{and}\quad \sum_r \bigl(c_i^{(r)}\bigr)^2 = k\, c_i^2 \quad \text{for every } i

(then the bytes have mean :math:`c_i` and variance 0; if they differ, no
rank's own bytes satisfy both, so every rank reaches the same verdict),
sums of integers that the buffer's dtype holds exactly (float32 up to 258
ranks; otherwise, e.g. float16 gradients, the bytes go in one small
allreduce of their own). On a difference every rank gathers the others'
values (:meth:`DriftCheck.differences`, a second collective, only
then) and raises the same error naming each differing rank and value,
parameter by parameter where the update rules differ too.

Not compared at every step: a parameter's own ``t`` and ``enabled``, a rule
object replaced without a new :class:`~corrmom_ref.Hyperparameter`, and the
momentum buffers.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import operator
from array import array
from collections.abc import Callable
from typing import Any

from corrmom_ref.hyperparameter import Hyperparameter, read_entry, sole_source, write_count

__all__ = ["DriftCheck"]

#: Differences listed in the error message.
_SHOWN = 5
_MASK = (1 << 64) - 1


class DriftCheck:
    """What every rank must agree on before each step of ``optimizer``; the names are fixed at setup.

    Args:
        optimizer: The wrapped :class:`~corrmom_ref.GradientMethod`, set up
            (the same on every rank: ``setup()`` checked that).
    """

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        #: The optimizer's numeric hyperparameters at setup, sorted by name.
        self.hyperparameters = tuple(
            sorted(
                name for name, value in optimizer.hyperparam.get_dict().items() if _number(value) is not None
            )
        )
        #: ``fingerprint()`` calls so far (one per step, on every rank).
        self._calls = 0
        #: The last fingerprint, and what it was computed for (``None``: compute it again).
        self._last = b""
        self._state: tuple[Any, ...] | None = None
        #: Reads those hyperparameters' values (a tuple, or one value when there is one).
        self._read: Callable[[Any], Any] = (
            operator.attrgetter(*self.hyperparameters) if self.hyperparameters else _nothing
        )
        #: Whether the last fingerprint read a value that can change unseen (then: compute it every step).
        self._volatile = False
        #: The digest of the parameters' own hyperparameters, and ``write_count()`` and
        #: ``hyperparam`` of the optimizer when it was taken.
        self._overrides = 0
        self._overrides_seen: tuple[Any, ...] = ()

    def _optimizer_values(self) -> tuple[float | None, ...]:
        opt = self.optimizer
        hyper = opt.hyperparam
        scale = opt.loss_scale
        return (
            *(_number(getattr(hyper, name, None)) for name in self.hyperparameters),
            opt.t,
            opt.epoch,
            0.0 if scale is None else scale,
        )

    def fingerprint(self) -> bytes:
        """8 bytes that differ between two ranks whose checked values differ (but for a 2**-64 chance).

        Called once per step on every rank (the ranks call ``update()`` in
        lockstep), so ``t`` enters as ``t`` minus the calls so far, which
        stays put while ``t`` advances one per step. The bytes are computed
        again only when that, ``epoch``, the loss scale or
        :func:`~corrmom_ref.hyperparameter.write_count` moved (the same
        object is returned meanwhile), or at every step while some
        hyperparameter is not a plain number in a plain
        :class:`~corrmom_ref.Hyperparameter`. The parameters' own
        hyperparameters enter as the digest of ``_overrides_digest()``.
        Python's hash of a tuple of numbers is the same in every
        process (hash randomization covers only strings and bytes; only
        numbers are hashed: ``None``'s hash is its address before Python
        3.12), and equal numbers of different types (``0.1``,
        ``np.float64(0.1)``) hash alike; the values are finite here
        (``check_update_inputs`` ran first).
        """
        opt = self.optimizer
        calls = self._calls
        self._calls = calls + 1
        scale = opt.loss_scale
        state = (write_count(), opt.hyperparam, opt.t - calls, opt.epoch, scale)
        if state == self._state:
            return self._last
        overrides = self._overrides
        if state[:2] != self._overrides_seen or self._volatile:
            overrides = self._overrides = self._overrides_digest()
            self._overrides_seen = state[:2]
        try:
            hyperparameters = self._read(opt.hyperparam)
            digest = hash((hyperparameters, *state[2:4], 0.0 if scale is None else scale, overrides))
        except (TypeError, AttributeError):  # an unhashable value (a 0-d array), or one deleted
            values = self._optimizer_values()
            flat = (*values[:-3], opt.t - calls, *values[-2:], overrides)
            digest = hash(tuple(-math.inf if v is None else v for v in flat))
        self._last = (digest & _MASK).to_bytes(8, "little")
        self._state = None if self._volatile else state
        return self._last

    def _overrides_digest(self) -> int:
        """A pass over the parameters: a digest of the hyperparameters of each one that differ from the optimizer's.

        A rule that reads the optimizer's entries unchanged, or holds entries
        equal to them, adds nothing; any other adds its index and values, so
        the digest depends on the values the rules read and not on where
        they are stored. The digest hashes their float64 bytes (BLAKE2b, the
        same in every process). Sets ``_volatile`` when some value read, the
        optimizer's too, is not a plain number in a plain
        :class:`~corrmom_ref.Hyperparameter` (then no write need announce a change).
        """
        opt = self.optimizer
        root = opt.hyperparam
        names = self.hyperparameters
        shared = [getattr(root, name, None) for name in names]
        volatile = type(root) is not Hyperparameter or not all(map(_plain, shared))
        shared_bytes = _canonical_bytes(shared)
        found = []
        for index, (_, param) in enumerate(opt.target.namedparams()):
            rule = param.update_rule
            if rule is None or sole_source(rule.hyperparam) is root:
                continue
            own = [_read_or_none(rule.hyperparam, name) for name in names]
            volatile = volatile or not _plain_chain(rule.hyperparam) or not all(map(_plain, own))
            own_bytes = _canonical_bytes(own)
            if own_bytes != shared_bytes:
                found += [index.to_bytes(8, "little"), own_bytes]
        self._volatile = volatile
        return int.from_bytes(hashlib.blake2b(b"".join(found), digest_size=8).digest(), "little")

    def labels(self) -> list[str]:
        """What each element of :meth:`values` is, for the error message."""
        out = [f"hyperparameter {name}" for name in self.hyperparameters]
        out += ["t", "epoch", "loss scale"]
        for name, _ in self.optimizer.target.namedparams():
            out += [f"t of {name}", f"enabled of {name}"]
            out += [f"hyperparameter {h} of {name}" for h in self.hyperparameters]
        return out

    def values(self) -> Any:
        """This rank's values, per parameter too: a float64 NumPy array (a missing one NaN, no loss scale 0)."""
        import numpy as np

        out = list(self._optimizer_values())
        for _, param in self.optimizer.target.namedparams():
            rule = param.update_rule
            if rule is None:
                out += [None] * (2 + len(self.hyperparameters))
                continue
            out += [rule.t, 1.0 if rule.enabled else 0.0]
            out += [_number(read_entry(rule.hyperparam, name)) for name in self.hyperparameters]
        return np.array([math.nan if v is None else v for v in out], dtype=np.float64)

    def differences(self, communicator: Any) -> RuntimeError:
        """Gather every rank's :meth:`values` (collective): the error naming the differences, the same on every rank."""
        import numpy as np

        what = "the drift check of update(), gathering every rank's hyperparameters and counters"
        gathered = communicator.allgather_bytes(self.values().tobytes(), what=what)
        ranks = [np.frombuffer(values, dtype=np.float64) for values in gathered]
        labels = self.labels()
        found = []
        for rank, values in enumerate(ranks[1:], start=1):
            pairs = dict(zip(labels, zip(ranks[0].tolist(), values.tolist(), strict=True), strict=True))
            for label, (ours, theirs) in pairs.items():
                inherited = _inherited_from(label)
                if ours == theirs or (inherited is not None and pairs.get(inherited) == (ours, theirs)):
                    continue  # equal, or a parameter's view of an optimizer-wide change already listed
                found.append(f"{label} = {_shown(ours)} on rank 0, {_shown(theirs)} on rank {rank}")
        more = f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        return RuntimeError(
            "the ranks no longer step with the same numbers (changed on some ranks only after setup(), "
            "or another snapshot loaded there): " + "; ".join(found[:_SHOWN]) + more
        )


def _nothing(_: Any) -> tuple[()]:
    return ()


def _plain(value: Any) -> bool:
    """Whether ``value`` cannot change in place: a number (Python's or a NumPy scalar), or missing."""
    return value is None or isinstance(value, numbers.Number)


def _canonical_bytes(values: list[Any]) -> bytes:
    """The values as float64 bytes that are equal exactly when the numbers are: NaN for a missing one, no -0.0."""
    out = []
    for value in values:
        number = _number(value)
        out.append(math.nan if number is None or math.isnan(number) else number + 0.0)
    return array("d", out).tobytes()


def _plain_chain(hyperparam: Any) -> bool:
    """Whether ``hyperparam`` and its parents are all plain :class:`~corrmom_ref.Hyperparameter` objects."""
    while hyperparam is not None:
        if type(hyperparam) is not Hyperparameter:
            return False
        hyperparam = hyperparam.parent
    return True


def _read_or_none(hyperparam: Any, name: str) -> Any:
    try:
        return read_entry(hyperparam, name)
    except AttributeError:
        return None


def _inherited_from(label: str) -> str | None:
    """``"hyperparameter lr of /W"`` -> ``"hyperparameter lr"`` (other labels: ``None``)."""
    head, of, _ = label.partition(" of ")
    return head if of and label.startswith("hyperparameter ") else None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _shown(value: float) -> str:
    """``0.1``, ``3`` (a whole number), ``nan``."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(float(value))
