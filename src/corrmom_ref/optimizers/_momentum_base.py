"""What the two momentum rules share: hyperparameters ``lr`` and ``momentum``, state ``v``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace

from corrmom_ref._namespace import namespace_of
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.hyperparameter import Hyperparameter, HyperparameterProxy, read_entry
from corrmom_ref.optimizer import GradientMethod
from corrmom_ref.update_rule import UpdateRule

if TYPE_CHECKING:
    from corrmom_ref.link import Parameter

DEFAULT_LR = 0.01
DEFAULT_MOMENTUM = 0.9

Step = Callable[[Any, Any, Any, Any, float, float], tuple[Any, Any]]


def default_hyperparam() -> Hyperparameter:
    """Chainer's defaults, ``lr=0.01`` and ``momentum=0.9``."""
    hyperparam = Hyperparameter()
    hyperparam.lr = DEFAULT_LR
    hyperparam.momentum = DEFAULT_MOMENTUM
    return hyperparam


class MomentumRuleBase(UpdateRule):
    """An update rule with ``lr``, ``momentum`` and one state array ``v`` (zeros at first)."""

    state_keys = ("v",)
    nonnegative_hyperparams = ("lr", "momentum")
    _DEFAULTS = default_hyperparam()

    def __init__(
        self,
        parent_hyperparam: Hyperparameter | None = None,
        lr: float | None = None,
        momentum: float | None = None,
    ) -> None:
        super().__init__(parent_hyperparam or self._DEFAULTS)
        if lr is not None:
            self.hyperparam.lr = check_nonnegative_finite("lr", lr, type(self).__name__)
        if momentum is not None:
            self.hyperparam.momentum = check_nonnegative_finite("momentum", momentum, type(self).__name__)

    def init_state(self, param: Parameter) -> None:
        """``v`` starts at zeros like the parameter (PyTorch starts at the first gradient)."""
        self.state["v"] = array_namespace(param.array).zeros_like(param.array)

    def update_core(self, param: Parameter) -> None:
        """Apply :meth:`step` to ``param`` and ``v``; a ``None`` gradient is skipped."""
        grad = param.grad
        if grad is None:
            return
        hyperparam = self.hyperparam
        state = self.state
        array = param.array
        param.array, state["v"] = type(self).step(
            namespace_of(array),
            array,
            grad,
            state["v"],
            float(read_entry(hyperparam, "lr")),
            float(read_entry(hyperparam, "momentum")),
        )

    #: The elementwise step ``(xp, p, g, v, lr, m) -> (p, v)``.
    step: Step


class MomentumMethodBase(GradientMethod):
    """An optimizer with ``lr`` and ``momentum`` proxies and a rule class."""

    rule_class: type[MomentumRuleBase]

    def __init__(self, lr: float = DEFAULT_LR, momentum: float = DEFAULT_MOMENTUM) -> None:
        super().__init__()
        name = type(self).__name__
        self.hyperparam.lr = check_nonnegative_finite("lr", lr, name)
        self.hyperparam.momentum = check_nonnegative_finite("momentum", momentum, name)

    lr: HyperparameterProxy[float] = HyperparameterProxy("lr")
    momentum: HyperparameterProxy[float] = HyperparameterProxy("momentum")

    def create_update_rule(self) -> MomentumRuleBase:
        """A rule whose hyperparameters fall back to this optimizer's."""
        return self.rule_class(self.hyperparam)
