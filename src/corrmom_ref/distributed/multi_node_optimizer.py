r"""A multi-node optimizer: any optimizer of ours, fed with gradients averaged over MPI ranks.

:meth:`MultiNodeOptimizer.update` runs the wrapped optimizer's step (Chainer's
order, see :meth:`corrmom_ref.GradientMethod.update`) on averaged gradients:

1. with ``lossfun``: forward, clear gradients, backward with the current
   loss scale :math:`s` (the same on every rank);
2. check every parameter, gradient and hyperparameter
   (:meth:`~corrmom_ref.GradientMethod.check_update_inputs`, before anything
   changes), then reallocate cleared gradients as zeros;
3. average the still-scaled gradients, :math:`\bar g = \tfrac1k\sum_r s\,g^{(r)}
   = s\,\tfrac1k\sum_r g^{(r)}`, in one allreduce that also carries each
   rank's "non-finite gradient" verdict (dynamic loss scaling only) and a
   fingerprint of its hyperparameters and counters
   (:class:`~corrmom_ref.distributed.drift.DriftCheck`): if one rank's
   differ (``opt.lr`` or a parameter's own ``update_rule.hyperparam.lr``
   changed there after ``setup()``, another snapshot loaded there), every
   rank raises, before any gradient is averaged;
4. the wrapped optimizer's own update, which ORs the agreed verdict into its
   own NaN check (through
   :meth:`~corrmom_ref.GradientMethod.set_outside_nonfinite_verdict`), so if
   one rank overflowed every rank skips the step and halves its loss scale;
   the rules then divide by :math:`s` as usual.

Every rank starts from rank 0's parameters (broadcast by :meth:`setup`) and
applies the same update to the same bits, so all ranks stay bitwise equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corrmom_ref._finite import all_finite
from corrmom_ref.distributed.agreement import check_same_setup
from corrmom_ref.distributed.communicator import FingerprintMismatchError, MpiCommunicator
from corrmom_ref.distributed.drift import DriftCheck

__all__ = ["MultiNodeOptimizer", "create_multi_node_optimizer"]

_OWN = frozenset({"actual_optimizer", "communicator", "_agreed_nonfinite", "_drift"})


class MultiNodeOptimizer:
    """Wraps ``actual_optimizer``; every other attribute reads and writes through to it.

    So ``opt.lr = 0.1``, ``opt.add_hook(...)``, ``opt.loss_scaling()``,
    ``opt.t`` and ``opt.serialize(...)`` behave as on the wrapped optimizer,
    and its snapshots have the same keys (they load into a single-process
    optimizer and back).

    Args:
        actual_optimizer: A :class:`~corrmom_ref.GradientMethod` (e.g.
            :class:`~corrmom_ref.CorrectedMomentumSGD`), not yet set up or set
            up on the link to train.
        communicator: The :class:`MpiCommunicator` to average over.
    """

    def __init__(self, actual_optimizer: Any, communicator: MpiCommunicator) -> None:
        object.__setattr__(self, "actual_optimizer", actual_optimizer)
        object.__setattr__(self, "communicator", communicator)
        object.__setattr__(self, "_agreed_nonfinite", False)
        object.__setattr__(self, "_drift", None)
        if actual_optimizer.target is not None:
            check_same_setup(communicator, actual_optimizer, actual_optimizer.target)
            self._install(actual_optimizer.target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.actual_optimizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.actual_optimizer, name, value)

    def setup(self, link: Any) -> MultiNodeOptimizer:
        """Set up the wrapped optimizer on ``link`` and broadcast rank 0's parameters.

        First checks, in one collective, that every rank has the same
        optimizer class and hyperparameters and the same parameter names,
        shapes and dtypes (:func:`~corrmom_ref.distributed.agreement.check_same_setup`).

        Raises:
            ValueError: On every rank, if some rank differs from rank 0 (the
                message names the rank and what differs); then nothing has
                changed (the wrapped optimizer is not set up, nothing is
                broadcast).
        """
        if callable(getattr(link, "namedparams", None)):  # else the wrapped setup says what is wrong
            check_same_setup(self.communicator, self.actual_optimizer, link)
        self.actual_optimizer.setup(link)
        self._install(link)
        return self

    def _install(self, link: Any) -> None:
        self.communicator.bcast_data(link)
        self._drift = DriftCheck(self.actual_optimizer)
        # The wrapped optimizer's update asks this after its own NaN check.
        self.actual_optimizer.set_outside_nonfinite_verdict(self._agreed_verdict)

    def _agreed_verdict(self) -> bool:
        """Whether some rank's gradients were not finite in the last :meth:`update`."""
        return bool(self._agreed_nonfinite)

    def update(self, lossfun: Callable[..., Any] | None = None, *args: Any, **kwds: Any) -> None:
        """One data-parallel step (see the module docstring for the order).

        Raises:
            RuntimeError: On every rank, if some rank's hyperparameters
                (the optimizer's, or a parameter's own), ``t``, ``epoch``
                or loss scale differ from the others' (naming the rank,
                the parameter where it is one's own, and both values);
                nothing is averaged or updated then.
        """
        actual = self.actual_optimizer
        if lossfun is not None:
            actual.backward_loss(lossfun, *args, **kwds)
        # Refuse bad inputs before the gradients are averaged in place: a refused
        # step leaves them (and everything else) as they were.
        actual.check_update_inputs()
        actual.reallocate_cleared_grads()
        verdict = None
        if actual.dynamic_loss_scaling:
            verdict = not all_finite([p.grad for p in actual.target.params()])
        drift = self._drift
        if drift is None:  # wrapped, and its optimizer set up, without this wrapper's setup()
            agreed = self.communicator.mean_grads(actual.target, verdict)
        else:
            try:
                agreed = self.communicator.mean_grads(actual.target, verdict, fingerprint=drift.fingerprint())
            except FingerprintMismatchError:
                raise drift.differences(self.communicator) from None
        self._agreed_nonfinite = bool(agreed)
        actual.update()

    def serialize(self, serializer: Any) -> None:
        """Save or load the wrapped optimizer (same keys as without MPI)."""
        self.actual_optimizer.serialize(serializer)


def create_multi_node_optimizer(
    actual_optimizer: Any, communicator: MpiCommunicator | None = None
) -> MultiNodeOptimizer:
    """Wrap ``actual_optimizer`` for data-parallel training (ChainerMN's name).

    >>> # under mpiexec -n K:
    >>> # comm = corrmom_ref.distributed.create_communicator()
    >>> # opt = create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.1), comm).setup(model)
    """
    return MultiNodeOptimizer(actual_optimizer, communicator or MpiCommunicator())
