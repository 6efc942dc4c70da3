"""What the two momentum rules share: hyperparameters ``lr`` and ``momentum``, state ``v``."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from array_api_compat import array_namespace

from corrmom_ref._namespace import is_float16 as _is_float16
from corrmom_ref._namespace import namespace_of, placement_of
from corrmom_ref._step.operands import scalar_operand
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.hyperparameter import Hyperparameter, HyperparameterProxy, read_entries, read_entry
from corrmom_ref.optimizer import GradientMethod
from corrmom_ref.update_rule import UpdateRule

if TYPE_CHECKING:
    from corrmom_ref.link import Parameter

DEFAULT_LR = 0.01
DEFAULT_MOMENTUM = 0.9

Step = Callable[[Any, Any, Any, Any, float, float], tuple[Any, Any]]
Steps = Callable[[Any, list[Any], list[Any], list[Any], float, float], tuple[list[Any], list[Any]]]


def default_hyperparam() -> Hyperparameter:
    """Chainer's defaults, ``lr=0.01`` and ``momentum=0.9``."""
    hyperparam = Hyperparameter()
    hyperparam.lr = DEFAULT_LR
    hyperparam.momentum = DEFAULT_MOMENTUM
    return hyperparam


class MomentumRuleBase(UpdateRule):
    """An update rule with ``lr``, ``momentum`` and one state array ``v`` (zeros at first).

    Rules of one class whose parameters share array type, dtype and device
    and whose ``lr`` and ``momentum`` have equal values (and types) are
    stepped together by one :attr:`steps` call (:meth:`batch_key`), which
    gives each parameter what :meth:`update` would. That holds only while
    the class updates as this one does, so it is declared, not inferred:
    :attr:`batchable` is ``True`` here, and a subclass that overrides
    :meth:`update`, :meth:`update_core` or :attr:`step` must say whether it is
    batchable; if it says nothing, ``batchable = False`` is set for it when
    the class is created, so its own code runs for every parameter (a
    subclass that gives both :attr:`step` and a matching :attr:`steps` may
    declare ``batchable = True``). A rule whose ``update``, ``update_core`` or
    ``step`` is replaced on the instance is stepped alone as well.
    """

    #: Whether ``update_batch`` may step this class's rules together (see the class docstring).
    batchable: ClassVar[bool] = True

    state_keys = ("v",)
    nonnegative_hyperparams = ("lr", "momentum")
    floating_point_only = True
    _DEFAULTS = default_hyperparam()

    def __init__(
        self,
        parent_hyperparam: Hyperparameter | None = None,
        lr: float | None = None,
        momentum: float | None = None,
    ) -> None:
        super().__init__(parent_hyperparam or self._DEFAULTS)
        if lr is not None:
            self.hyperparam.lr = _hyperparameter_to_store(
                lr, check_nonnegative_finite("lr", lr, type(self).__name__)
            )
        if momentum is not None:
            self.hyperparam.momentum = _hyperparameter_to_store(
                momentum, check_nonnegative_finite("momentum", momentum, type(self).__name__)
            )

    def init_state(self, param: Parameter) -> None:
        """``v`` starts at zeros like the parameter (PyTorch starts at the first gradient)."""
        self.state["v"] = array_namespace(param.array).zeros_like(param.array)

    def update_core(self, param: Parameter) -> None:
        """Apply :attr:`step` to ``param`` and ``v``; a ``None`` gradient is skipped.

        The step is looked up on the rule, so one replaced on the instance
        (``rule.step = f``, called as ``f(xp, p, g, v, lr, m)``) is the one that runs.
        """
        grad = param.grad
        if grad is None:
            return
        hyperparam = self.hyperparam
        state = self.state
        array = param.array
        xp = namespace_of(array)
        param.array, state["v"] = self.step(
            xp,
            array,
            grad,
            state["v"],
            scalar_operand(xp, read_entry(hyperparam, "lr")),
            scalar_operand(xp, read_entry(hyperparam, "momentum")),
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that overrides the update and does not declare :attr:`batchable` is not batchable."""
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "batchable" not in own and any(name in own for name in ("update", "update_core", "step")):
            cls.batchable = False

    def batch_key(self, param: Parameter) -> Hashable | None:
        """Batch with rules of the same class, array type, dtype, device, ``lr`` and ``momentum``.

        Keyed by values: ``lr`` and ``momentum`` enter with their types, since
        on NumPy 1.x a ``numpy.float32`` and a Python float of one value round
        0-d arithmetic differently (:mod:`corrmom_ref._step.operands`).
        Only a plain step batches: the class is :attr:`batchable`, the rule is
        enabled, has its state, has a gradient, no loss scale to divide by,
        no float32 master copy, and nothing replaced on the instance.
        """
        cls = type(self)
        if not (cls.batchable and self.enabled and self._state is not None):
            return None
        own = self.__dict__
        if "update" in own or "update_core" in own or "step" in own:
            return None  # replaced on this instance
        array = param.array
        if param.grad is None or getattr(param, "loss_scale", None) is not None:
            return None
        if self._use_fp32_update and _is_float16(array.dtype):
            return None
        lr, momentum = read_entries(self.hyperparam, "lr", "momentum")
        if type(lr) is float and type(momentum) is float:
            return cls, type(array), array.dtype, placement_of(array), lr, momentum
        # the types too: equal values of two types compare equal, and on NumPy 1.x round 0-d arithmetic differently
        return cls, type(array), array.dtype, placement_of(array), lr, type(lr), momentum, type(momentum)

    @classmethod
    def update_batch(cls, members: Sequence[tuple[Parameter, UpdateRule]]) -> None:
        """One :attr:`steps` call for the batch: the parameters and ``v`` as :meth:`update` leaves them."""
        states: list[dict[str, Any]] = [rule._state for _, rule in members]  # type: ignore[misc]
        arrays = [param.array for param, _ in members]
        grads = [param.grad for param, _ in members]
        velocities = [state["v"] for state in states]
        hyperparam = members[0][1].hyperparam
        xp = namespace_of(arrays[0])
        new_ps, new_vs = cls.steps(
            xp,
            arrays,
            grads,
            velocities,
            scalar_operand(xp, read_entry(hyperparam, "lr")),
            scalar_operand(xp, read_entry(hyperparam, "momentum")),
        )
        for (param, rule), state, new_p, new_v in zip(members, states, new_ps, new_vs, strict=True):
            rule.t += 1
            param.array = new_p
            state["v"] = new_v

    #: The elementwise step ``(xp, p, g, v, lr, m) -> (p, v)``.
    step: Step
    #: The same step over lists of arrays: ``(xp, ps, gs, vs, lr, m) -> (ps, vs)``.
    steps: Steps


class MomentumMethodBase(GradientMethod):
    """An optimizer with ``lr`` and ``momentum`` proxies and a rule class."""

    rule_class: type[MomentumRuleBase]

    def __init__(self, lr: float = DEFAULT_LR, momentum: float = DEFAULT_MOMENTUM) -> None:
        super().__init__()
        name = type(self).__name__
        self.hyperparam.lr = _hyperparameter_to_store(lr, check_nonnegative_finite("lr", lr, name))
        self.hyperparam.momentum = _hyperparameter_to_store(
            momentum, check_nonnegative_finite("momentum", momentum, name)
        )

    lr: HyperparameterProxy[float] = HyperparameterProxy("lr")
    momentum: HyperparameterProxy[float] = HyperparameterProxy("momentum")

    def create_update_rule(self) -> MomentumRuleBase:
        """A rule whose hyperparameters fall back to this optimizer's."""
        return self.rule_class(self.hyperparam)


def _hyperparameter_to_store(value: Any, checked: float) -> Any:
    """The value to store for a checked hyperparameter: a NumPy scalar as given (Chainer keeps it,
    and on NumPy 1.x its type changes 0-d arithmetic: :mod:`corrmom_ref._step.operands`),
    anything else as the Python float ``checked``."""
    return value if type(value).__module__ == "numpy" else checked
