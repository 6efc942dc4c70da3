"""A rule and optimizer written the way Chainer users extend Chainer, built on either side's base classes.

:func:`counting_momentum` returns the same code twice: once on
``chainer.UpdateRule`` / ``chainer.GradientMethod``, once on corrmom_ref's.
The rule overrides only ``update_core_cpu`` (so the machinery must dispatch
to it), keeps state entries it never declares (``v``, a step counter
``steps`` and the last gradient ``last_grad``), and reads ``lr`` and
``momentum`` from its hyperparameter. Its maths is MomentumSGD's,
``v <- m v - lr g; p <- p + v``, in place on NumPy arrays; identical code
on both sides, so any difference the fuzz finds is the machinery's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The name scenarios use for this optimizer (``Scenario.optimizer``).
NAME = "CountingMomentum"


def counting_momentum(rule_base: type, method_base: type, proxy: type) -> type:
    """The optimizer class on the given bases (``proxy``: the side's ``HyperparameterProxy``)."""

    class CountingMomentumRule(rule_base):  # type: ignore[misc,valid-type]
        def init_state(self, param: Any) -> None:
            self.state["steps"] = 0
            self.state["v"] = np.zeros_like(param.array)
            self.state["last_grad"] = np.zeros_like(param.array)

        def update_core_cpu(self, param: Any) -> None:
            grad = param.grad
            if grad is None:
                return
            v = self.state["v"]
            v *= self.hyperparam.momentum
            v -= self.hyperparam.lr * grad
            param.array += v
            self.state["steps"] += 1
            self.state["last_grad"] = grad.copy()

    class CountingMomentum(method_base):  # type: ignore[misc,valid-type]
        lr = proxy("lr")
        momentum = proxy("momentum")

        def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
            super().__init__()
            self.hyperparam.lr = lr
            self.hyperparam.momentum = momentum

        def create_update_rule(self) -> Any:
            return CountingMomentumRule(self.hyperparam)

    return CountingMomentum
