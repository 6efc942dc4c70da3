"""What the two momentum rules share: hyperparameters ``lr`` and ``momentum``, state ``v``."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace

from corrmom_ref._backends.scalars import scalar_operand
from corrmom_ref._namespace import is_float16 as _is_float16
from corrmom_ref._namespace import namespace_of, placement_of
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.hyperparameter import Hyperparameter, HyperparameterProxy, read_entry
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
    """An update rule with ``lr``, ``momentum`` and one state array ``v`` (zeros at first)."""

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
            self.hyperparam.lr = _as_given(lr, check_nonnegative_finite("lr", lr, type(self).__name__))
        if momentum is not None:
            self.hyperparam.momentum = _as_given(
                momentum, check_nonnegative_finite("momentum", momentum, type(self).__name__)
            )

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
        xp = namespace_of(array)
        param.array, state["v"] = type(self).step(
            xp,
            array,
            grad,
            state["v"],
            scalar_operand(xp, read_entry(hyperparam, "lr")),
            scalar_operand(xp, read_entry(hyperparam, "momentum")),
        )

    def batch_key(self, param: Parameter) -> Hashable | None:
        """Batch with rules of the same class, array type, dtype, placement (device), ``lr`` and ``momentum``.

        Rules that override no hyperparameter and share a parent read the
        same ``lr`` and ``momentum``, so their key holds the parent itself
        (reading the two values costs half a microsecond per rule); a rule
        with entries of its own is keyed by the values.

        Only a plain step batches: the rule is enabled, has its state, has a
        gradient, no loss scale to divide by, no float32 master copy, and its
        class and the rule itself keep this class's :meth:`update`,
        :meth:`update_core` and :attr:`step` (or give a matching :attr:`steps`).
        """
        cls = type(self)
        if not (self.enabled and self._state is not None and _plain_update(cls)):
            return None
        own = self.__dict__
        if "update" in own or "update_core" in own or "step" in own:
            return None  # replaced on this instance
        array = param.array
        if param.grad is None or getattr(param, "loss_scale", None) is not None:
            return None
        if self._use_fp32_update and _is_float16(array.dtype):
            return None
        return cls, type(array), array.dtype, placement_of(array), _hyperparameter_key(self.hyperparam)

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
        self.hyperparam.lr = _as_given(lr, check_nonnegative_finite("lr", lr, name))
        self.hyperparam.momentum = _as_given(momentum, check_nonnegative_finite("momentum", momentum, name))

    lr: HyperparameterProxy[float] = HyperparameterProxy("lr")
    momentum: HyperparameterProxy[float] = HyperparameterProxy("momentum")

    def create_update_rule(self) -> MomentumRuleBase:
        """A rule whose hyperparameters fall back to this optimizer's."""
        return self.rule_class(self.hyperparam)


def _as_given(value: Any, checked: float) -> Any:
    """The value to store for a checked hyperparameter: a NumPy scalar as given (Chainer keeps it,
    and on NumPy 1.x its type changes 0-d arithmetic: :mod:`corrmom_ref._backends.scalars`),
    anything else as the Python float ``checked``."""
    return value if type(value).__module__ == "numpy" else checked


def _hyperparameter_key(hyperparam: Hyperparameter) -> Hashable:
    """What fixes the ``lr`` and ``momentum`` a rule reads: its parent, or the two values.

    A plain :class:`Hyperparameter` holding only its parent link reads both
    from the parent, so rules with the same parent read the same values. A
    subclass may compute entries without holding any, so it is keyed by the
    values and their types (see :mod:`corrmom_ref._backends.scalars`), as is
    a rule with entries of its own.
    """
    entries = hyperparam.__dict__
    if type(hyperparam) is Hyperparameter and len(entries) == 1:
        return entries["_parent"]
    lr, momentum = read_entry(hyperparam, "lr"), read_entry(hyperparam, "momentum")
    # the types too: on NumPy 1.x a numpy.float32 and a Python float of one value round 0-d arithmetic differently
    return type(lr), float(lr), type(momentum), float(momentum)


#: Per rule class: whether it updates as :class:`MomentumRuleBase` does.
_PLAIN_UPDATE: dict[type, bool] = {}


def _plain_update(cls: type[MomentumRuleBase]) -> bool:
    """Whether ``cls`` updates as :class:`MomentumRuleBase` does, so that :attr:`~MomentumRuleBase.steps` may batch it.

    A subclass may override :meth:`update` or :meth:`update_core`, or give
    a new :attr:`~MomentumRuleBase.step` without a matching ``steps``; any of
    these keeps its rules updating one by one.
    """
    plain = _PLAIN_UPDATE.get(cls)
    if plain is None:
        plain = (
            cls.update is UpdateRule.update
            and cls.update_core is MomentumRuleBase.update_core
            and issubclass(_defined_in(cls, "steps"), _defined_in(cls, "step"))
        )
        _PLAIN_UPDATE[cls] = plain
    return plain


def _defined_in(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose body defines ``name``."""
    return next(klass for klass in cls.__mro__ if name in vars(klass))
