r"""Momentum SGD without correction: Goyal et al. (2017), eq. (10), as Chainer's ``MomentumSGD``.

Kept for comparison: under a changing learning rate it departs from
:class:`~corrmom_ref.CorrectedMomentumSGD` because it lacks the factor
:math:`\eta_{t+1}/\eta_t` on the state.
"""

from __future__ import annotations

from corrmom_ref._step import policy
from corrmom_ref.optimizers._momentum_base import MomentumMethodBase, MomentumRuleBase

__all__ = ["MomentumSGD", "MomentumSGDRule"]


class MomentumSGDRule(MomentumRuleBase):
    r"""Update rule of :class:`MomentumSGD`.

    .. math::

        v \leftarrow m\,v - \eta\,g, \qquad w \leftarrow w + v

    Args:
        parent_hyperparam: Hyperparameter providing defaults
            (``lr=0.01``, ``momentum=0.9`` if ``None``).
        lr: Learning rate :math:`\eta` for this parameter.
        momentum: Momentum :math:`m` for this parameter.
    """

    batchable = True  # step and steps are the same update, one triple and a list
    # Eq. (10) as corrmom_ref._step.reference.uncorrected_step states it, run by the
    # path corrmom_ref._step.policy.choose picks.
    step = staticmethod(policy.dispatched_uncorrected_step)
    steps = staticmethod(policy.dispatched_uncorrected_steps)


class MomentumSGD(MomentumMethodBase):
    r"""Momentum SGD, Goyal et al. eq. (10) with ``v`` negated (Chainer's ``MomentumSGD``).

    Args:
        lr: Learning rate :math:`\eta` (finite, >= 0).
        momentum: Momentum :math:`m` (finite, >= 0).
    """

    rule_class = MomentumSGDRule
