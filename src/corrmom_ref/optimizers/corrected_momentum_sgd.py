r"""Momentum SGD with momentum correction: Goyal et al. (2017), eq. (9).

Goyal et al. write momentum SGD in two forms:

.. math::

    \text{(9)}\quad u_{t+1} = m u_t + g_t,\quad w_{t+1} = w_t - \eta_{t+1} u_{t+1}
    \qquad
    \text{(10)}\quad v_{t+1} = m v_t + \eta_{t+1} g_t,\quad w_{t+1} = w_t - v_{t+1}

With :math:`v_t = \eta_t u_t` they agree while :math:`\eta` is constant; when
it changes, (10) needs the *momentum correction* :math:`\eta_{t+1}/\eta_t` on
:math:`v_t`. Form (9) needs none, which is why this optimizer uses it. Its
state holds :math:`v = -u` (Chainer's sign), so snapshots interoperate with
Chainer's ``CorrectedMomentumSGD``.
"""

from __future__ import annotations

from corrmom_ref._step import policy
from corrmom_ref.optimizers._momentum_base import MomentumMethodBase, MomentumRuleBase

__all__ = ["CorrectedMomentumSGD", "CorrectedMomentumSGDRule"]


class CorrectedMomentumSGDRule(MomentumRuleBase):
    r"""Update rule of :class:`CorrectedMomentumSGD`.

    .. math::

        v \leftarrow m\,v - g, \qquad w \leftarrow w + \eta\,v

    Args:
        parent_hyperparam: Hyperparameter providing defaults
            (Chainer's ``lr=0.01``, ``momentum=0.9`` if ``None``).
        lr: Learning rate :math:`\eta` for this parameter.
        momentum: Momentum :math:`m` for this parameter.
    """

    batchable = True  # step and steps are the same update, one triple and a list
    # Eq. (9) as corrmom_ref._step.reference.corrected_step states it, run by the
    # path corrmom_ref._step.policy.choose picks.
    step = staticmethod(policy.dispatched_corrected_step)
    steps = staticmethod(policy.dispatched_corrected_steps)


class CorrectedMomentumSGD(MomentumMethodBase):
    r"""Momentum SGD with momentum correction (Goyal et al. eq. (9); Chainer's sign).

    Args:
        lr: Learning rate :math:`\eta` (finite, >= 0).
        momentum: Momentum :math:`m` (finite, >= 0).

    >>> import numpy as np
    >>> import corrmom_ref as cr
    >>> w = cr.Parameter(np.array([1.0, 2.0]))
    >>> opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(cr.Link(w=w))
    >>> w.grad = np.array([1.0, -1.0])
    >>> opt.update()
    >>> w.array  # w - lr * g, since v starts at zeros
    array([0.9, 2.1])
    """

    rule_class = CorrectedMomentumSGDRule
