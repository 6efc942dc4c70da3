"""Chainer's momentum updates, loss scaling and snapshots for optax training loops.

A backend-specific integration (it imports ``jax`` and ``optax``): the
transformations plug into ordinary optax code and keep Chainer's numbers
(see :func:`corrected_momentum_sgd` for the rounding) and Chainer's
state, so a run started in Chainer resumes here with the same next step::

    tx = loss_scaling(corrected_momentum_sgd(schedule, 0.9), interval=1000)
    state = load_chainer_snapshot("snapshot_iter_500", tx.init(params))

Public names: :func:`corrected_momentum_sgd`, :func:`momentum_sgd`,
:class:`MomentumState`, :func:`loss_scaling`, :func:`loss_scale`,
:class:`LossScalingState`, :func:`find_loss_scaling_state`,
:func:`load_chainer_snapshot`, :func:`save_chainer_snapshot`,
:func:`snapshot_loss_scaling`, :func:`chainer_path`.
"""

from corrmom_ref.optax._loss_scaling import (
    LossScalingState,
    find_loss_scaling_state,
    loss_scale,
    loss_scaling,
)
from corrmom_ref.optax._momentum import MomentumState, corrected_momentum_sgd, momentum_sgd
from corrmom_ref.optax._snapshot import (
    chainer_path,
    load_chainer_snapshot,
    save_chainer_snapshot,
    snapshot_loss_scaling,
)

__all__ = [
    "LossScalingState",
    "MomentumState",
    "chainer_path",
    "corrected_momentum_sgd",
    "find_loss_scaling_state",
    "load_chainer_snapshot",
    "loss_scale",
    "loss_scaling",
    "momentum_sgd",
    "save_chainer_snapshot",
    "snapshot_loss_scaling",
]
