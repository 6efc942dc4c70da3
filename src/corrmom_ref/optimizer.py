"""The optimizer machinery: :class:`Optimizer` and :class:`GradientMethod`.

Behaviour follows Chainer 7.8.1 step for step (see ``docs/machinery`` for the
order of operations inside :meth:`GradientMethod.update`). Where Chainer has a
plain bug the reference fixes it and says so in the docstring; where a Chainer
oddity changes numbers the reference keeps it, so trajectories match.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

from corrmom_ref._deprecated_hooks import deprecated_alias
from corrmom_ref._finite import finite_flags
from corrmom_ref._hooks import HookRegistry
from corrmom_ref._namespace import namespace_of, quick_alike_test
from corrmom_ref._scalar_checks import (
    ACCEPTED_LOSS_SCALE_MAX,
    ACCEPTED_LOSS_SCALE_MIN,
    check_counter,
    check_loss_scale,
)
from corrmom_ref._validation import check_gradient, check_parameter_dtype
from corrmom_ref.hyperparameter import Hyperparameter, quick_nonnegative_floats, sole_source
from corrmom_ref.loss_scaling import KEYS, LossScaling, NonFiniteGradientWarning, SavedLossScaling
from corrmom_ref.serializers.base import AbstractSerializer, Deserializer
from corrmom_ref.serializers.transfer import key_name, to_int
from corrmom_ref.update_rule import UpdateRule, update_all

__all__ = ["GradientMethod", "Optimizer"]

#: The default ``update_core``, which dispatches to the per-device methods.
_DISPATCHING_UPDATE_CORE = UpdateRule.update_core

#: Snapshot keys of the loss-scaling state (:data:`corrmom_ref.loss_scaling.KEYS`).
LOSS_SCALING_KEYS = tuple(sorted(KEYS.values()))


class Optimizer:
    """Base class of optimizers: target, counters, hooks, loss scaling, serialization.

    Attributes:
        target: The link (or any object with Chainer's ``params()`` /
            ``namedparams()``) set by :meth:`setup`.
        t: Number of :meth:`update` calls since :meth:`setup`, skipped
            (non-finite) steps included.
        epoch: Incremented by :meth:`new_epoch`.
        use_auto_new_epoch: Set by a training loop that calls
            ``new_epoch(auto=True)`` itself.
    """

    t = 0
    epoch = 0
    target: Any = None
    use_auto_new_epoch = False
    _hooks: HookRegistry | None = None

    @property
    def _loss_scaling(self) -> LossScaling:
        """The loss-scaling state (made on first use, so subclasses need not call ``__init__``)."""
        try:
            return self.__dict__["_loss_scaling_state"]  # type: ignore[no-any-return]
        except KeyError:
            state = self.__dict__["_loss_scaling_state"] = LossScaling()
            return state

    def setup(self, link: Any) -> Optimizer:
        """Set ``link`` as the target; reset ``t``, ``epoch`` and the hooks; return ``self``.

        Raises:
            TypeError: ``link`` has no ``params()`` and ``namedparams()``.
        """
        if not (callable(getattr(link, "params", None)) and callable(getattr(link, "namedparams", None))):
            raise TypeError(
                f"optimization target must be a link (an object with params() and namedparams()), "
                f"got {type(link).__name__}"
            )
        self.target = link
        self.t = 0
        self.epoch = 0
        self._hooks = HookRegistry(invalid_auto_timing="pre")
        return self

    def update(self, lossfun: Callable[..., Any] | None = None, *args: Any, **kwds: Any) -> None:
        """Update the target's parameters (implemented by subclasses)."""
        raise NotImplementedError

    def new_epoch(self, auto: bool = False) -> None:
        """Increment :attr:`epoch`.

        Raises:
            RuntimeError: ``auto`` disagrees with :attr:`use_auto_new_epoch`
                (an updater and user code would both count epochs).
        """
        if auto and not self.use_auto_new_epoch:
            raise RuntimeError(
                "new_epoch(auto=True) called, but use_auto_new_epoch is False: "
                "set optimizer.use_auto_new_epoch = True in the training loop that calls it"
            )
        if not auto and self.use_auto_new_epoch:
            raise RuntimeError(
                "new_epoch() called by hand while use_auto_new_epoch is True: "
                "the training loop already counts epochs"
            )
        self.epoch += 1

    # -- hooks -------------------------------------------------------------

    def _registry(self) -> HookRegistry:
        if self._hooks is None:
            raise RuntimeError("Optimizer is not set up: call setup(link) first")
        return self._hooks

    def add_hook(
        self,
        hook: Callable[..., Any],
        name: str | None = None,
        timing: Literal["pre", "post", "auto"] = "auto",
    ) -> None:
        """Register a hook called once per :meth:`update`, before or after the updates.

        A hook with a truthy ``call_for_each_param`` attribute is called as
        ``hook(param.update_rule, param)`` for every parameter, in
        ``target.params()`` order; any other as ``hook(optimizer)``.

        Args:
            hook: The callable.
            name: Registration name; defaults to ``hook.name``, then
                ``hook.__name__``.
            timing: ``'pre'`` (before the updates; gradients still scaled by
                the loss scale), ``'post'`` (after them), or ``'auto'``: the
                hook's ``timing`` attribute, else ``'pre'`` (an invalid
                attribute warns and falls back to ``'pre'``).

        Raises:
            RuntimeError: before :meth:`setup`.
            TypeError: ``hook`` is not callable.
            ValueError: bad ``timing``, or no name can be found.
            KeyError: the name is already registered.
        """
        self._registry().add(hook, name, timing)

    def remove_hook(self, name: str) -> None:
        """Unregister the hook called ``name`` (``KeyError`` if unknown)."""
        self._registry().remove(name)

    def call_hooks(self, timing: Literal["pre", "post"] = "pre") -> None:
        """Call the hooks of one timing in registration order."""
        for hook in self._registry().of(timing):
            self.call_hook(hook)

    def call_hook(self, hook: Callable[..., Any]) -> None:
        """Call one hook as :meth:`add_hook` describes."""
        if getattr(hook, "call_for_each_param", False):
            for param in self.target.params():
                hook(param.update_rule, param)
        else:
            hook(self)

    # -- loss scaling --------------------------------------------------------

    @property
    def loss_scale(self) -> float | None:
        """The current loss scale (``None``: no loss scaling)."""
        return self._loss_scaling.scale  # type: ignore[no-any-return]

    @property
    def _loss_scale(self) -> float | None:
        """:attr:`loss_scale` under Chainer's attribute name, for code that reads Chainer's
        optimizers and the reference's alike (read-only)."""
        return self._loss_scaling.scale  # type: ignore[no-any-return]

    @property
    def dynamic_loss_scaling(self) -> bool:
        """Whether the loss scale is dynamic (:meth:`loss_scaling` without ``scale``).

        It stays on after a later static :meth:`loss_scaling` call, as in
        Chainer (see there).
        """
        return self._loss_scaling.dynamic

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        """Configure loss scaling: dynamic when ``scale`` is ``None``, else static.

        The state is a :class:`~corrmom_ref.loss_scaling.LossScaling`
        (:meth:`~corrmom_ref.loss_scaling.LossScaling.configure`). Dynamic
        scaling restarts at 1.0 and follows
        :func:`~corrmom_ref.loss_scaling.next_loss_scale`. Static scaling fixes
        the scale. Chainer quirk, kept because it changes numbers: switching
        from dynamic to static leaves the dynamic flag on, so the static value
        keeps being doubled and halved; the reference warns when that happens.

        ``interval`` may be any integer type (``numpy.int64`` too) and
        ``scale`` any real type; a NumPy scalar scale is kept as given, as
        Chainer keeps it (its type matters to 0-d float16 gradients on NumPy
        1.x: ``corrmom_ref._step.operands``).

        Raises:
            ValueError: ``interval`` not an integer in ``[1, 2**63 - 1]``
                (dynamic), or ``scale`` not a real number in
                ``[2**-126, 2**126]`` (static: zero, NaN, ``inf``,
                ``1e-300``, ``10**400``, a string, an array and a bool are
                refused; then the scale and its reciprocal are normal float32
                numbers). A snapshot's loss-scaling keys are held to the same
                ranges.
        """
        self._loss_scaling.configure(interval, scale, stacklevel=2)

    def set_loss_scale(self, loss_scale: float) -> None:
        """Static loss scaling with ``loss_scale`` (``loss_scaling(scale=loss_scale)``)."""
        self.loss_scaling(scale=loss_scale)

    def check_nan_in_grads(self) -> None:
        """With dynamic scaling, flag this step as unsafe if any gradient is not finite.

        Warns a :class:`~corrmom_ref.loss_scaling.NonFiniteGradientWarning`
        per offending parameter. Its message names the parameter only; the
        iteration and the scale are its attributes. Chainer puts them in the
        message, so every skipped step adds an entry to Python's warnings
        registry (and a line to stderr) for ever; here the registry holds at
        most one entry per parameter.
        """
        scaling = self._loss_scaling
        scaling.record(False)
        if not scaling.dynamic:
            return
        named = [
            (name, p.grad)
            for name, p in self.target.namedparams()
            if p.array is not None and p.grad is not None
        ]
        flags = finite_flags([g for _, g in named])
        scaling.record(not all(flags))
        for (name, _), finite in zip(named, flags, strict=True):
            if not finite:
                warnings.warn(NonFiniteGradientWarning(name, self.t, scaling.scale), stacklevel=3)

    def is_safe_to_update(self) -> bool:
        """Whether the last :meth:`check_nan_in_grads` found only finite gradients.

        Chainer raises ``AttributeError`` before the first check; the
        reference returns ``True`` (no check has found anything).
        """
        return not self._loss_scaling.nonfinite_now

    def update_loss_scale(self) -> None:
        """Move the dynamic loss scale after a step (no-op for static or none)."""
        self._loss_scaling.advance()

    # -- serialization -------------------------------------------------------

    def serialize(self, serializer: AbstractSerializer) -> None:
        """Save or load ``t``, ``epoch``, each rule (``<path>/t``, ``<path>/<state>``)
        and the loss-scaling state (extra keys Chainer ignores).

        Loading reads and checks everything first and assigns only when all of
        it is valid: a load that raises leaves the optimizer as it was. A
        snapshot without loss-scaling keys (Chainer's) keeps the current
        loss-scaling configuration. Hyperparameters and hooks are not saved.
        """
        if isinstance(serializer, Deserializer):
            self._load(serializer)
            return
        serializer("t", self.t)
        serializer("epoch", self.epoch)
        for name, _, rule in self._rules():
            rule.serialize(serializer[name])
        self._save_loss_scaling(serializer)

    def _rules(self) -> list[tuple[str, Any, UpdateRule]]:
        """``(path, param, rule)`` of every parameter with a rule, in order."""
        return [
            (name, param, rule)
            for name, param in self.target.namedparams()
            if (rule := getattr(param, "update_rule", None)) is not None
        ]

    def _load(self, serializer: AbstractSerializer) -> None:
        where_t, where_epoch = (
            f"optimizer t ({key_name(serializer, 't')})",
            f"epoch ({key_name(serializer, 'epoch')})",
        )
        t = check_counter(to_int(serializer("t", self.t), where=where_t), where_t)
        epoch = check_counter(to_int(serializer("epoch", self.epoch), where=where_epoch), where_epoch)
        loaded_rules = [
            (rule, rule.read_snapshot(serializer[name], param, where=f"parameter {name}"))
            for name, param, rule in self._rules()
        ]
        loss_scaling = self._read_loss_scaling(serializer)
        self.t, self.epoch = t, epoch
        for rule, loaded in loaded_rules:
            rule.apply_loaded(loaded)
        if loss_scaling is not None:
            self._loss_scaling.restore(loss_scaling)

    def _save_loss_scaling(self, serializer: AbstractSerializer) -> None:
        for key, value in self._loss_scaling.snapshot_entries().items():
            serializer(key, value)

    def _read_loss_scaling(self, serializer: AbstractSerializer) -> SavedLossScaling | None:
        """Read and check the ``loss_scaling.*`` keys
        (:meth:`~corrmom_ref.loss_scaling.LossScaling.read_entries`)."""
        stored = {}
        for key in LOSS_SCALING_KEYS:
            try:
                value = serializer(key, None)
            except KeyError:
                continue
            if value is not None:
                stored[key] = value
        return LossScaling.read_entries(stored, getattr(serializer, "path", ""))


class GradientMethod(Optimizer):
    """An optimizer that updates each parameter with its own :class:`UpdateRule`.

    Subclasses implement :meth:`create_update_rule`. :attr:`hyperparam` is
    the parent of every rule's hyperparameters.

    Attributes:
        hyperparam: The optimizer's :class:`Hyperparameter` (``lr``,
            ``momentum``, ...); each rule's own hyperparameter falls back to it.
    """

    def __init__(self) -> None:
        self.hyperparam = Hyperparameter()
        self._use_fp32_update = False
        self._use_cleargrads = True
        self._outside_verdict: Callable[[], bool] | None = None

    def set_outside_nonfinite_verdict(self, verdict: Callable[[], bool] | None) -> None:
        """Let ``verdict()`` mark a step as non-finite, as a non-finite local gradient would.

        With dynamic loss scaling, every :meth:`update` asks ``verdict()``
        right after its own check of the gradients (step 4) and treats a true
        answer as that check finding a non-finite gradient: no rule updates,
        ``t`` still advances, the loss scale falls, and
        :meth:`~Optimizer.is_safe_to_update` answers ``False`` until the next check. No
        warning is issued for it (the gradients here are finite; whoever
        found the non-finite values reports them). Without dynamic loss
        scaling ``verdict`` is not asked. ``None`` removes it.

        This is the seam through which
        :class:`~corrmom_ref.distributed.MultiNodeOptimizer` makes every rank
        skip a step when any rank's gradients overflowed.
        """
        if verdict is not None and not callable(verdict):
            raise TypeError(f"verdict must be callable or None, got {type(verdict).__name__}")
        self._outside_verdict = verdict

    def _apply_outside_verdict(self) -> None:
        """Step 4's second half: OR the outside verdict into this step's non-finite flags."""
        verdict, scaling = self._outside_verdict, self._loss_scaling
        if verdict is None or not scaling.dynamic or scaling.nonfinite_now:
            return
        if verdict():
            scaling.record(True)

    def setup(self, link: Any) -> GradientMethod:
        """As :meth:`Optimizer.setup`, and give every parameter a fresh update rule.

        Old rules and their state are discarded; rules get fp32 update if
        :meth:`use_fp32_update` was called before.
        """
        super().setup(link)
        for param in link.params():
            rule = self.create_update_rule()
            if self._use_fp32_update:
                rule.use_fp32_update()
            param.update_rule = rule
        return self

    def create_update_rule(self) -> UpdateRule:
        """A new update rule for one parameter (implemented by subclasses)."""
        raise NotImplementedError

    def reallocate_cleared_grads(self) -> None:
        """Give every initialised parameter whose gradient is ``None`` a zero gradient.

        A parameter not initialised yet (array ``None``) keeps its ``None``
        gradient, as in Chainer.
        """
        for _, param in self.target.namedparams():  # a tuple's iterator: cheaper than params()
            if (array := param.array) is not None and param.grad is None:
                param.grad = namespace_of(array).zeros_like(array)

    def call_hook(self, hook: Callable[..., Any]) -> None:
        """Call one hook, then reallocate any gradient it cleared."""
        super().call_hook(hook)
        self.reallocate_cleared_grads()

    def check_update_inputs(self) -> list[tuple[str, Any, UpdateRule]]:
        """Raise, naming the parameter, unless every enabled rule can update.

        Checks that a rule with per-device methods only (Chainer-style) has
        the one for the parameter's arrays
        (:meth:`~corrmom_ref.UpdateRule.device_method`), that each gradient
        matches its parameter (backend, shape, dtype, device), that a rule with
        :attr:`~corrmom_ref.UpdateRule.floating_point_only` has no integer or
        boolean parameter, that each ``param.loss_scale`` is ``None`` or a
        real number in ``[2**-126, 2**126]`` (as a static loss scale, see
        :meth:`loss_scaling`), and that every hyperparameter of every enabled
        rule is valid (each rule on its own, every step: the common case of
        Python floats by
        ``corrmom_ref.hyperparameter.quick_nonnegative_floats``, any other
        by :meth:`~corrmom_ref.UpdateRule.check_hyperparameters`; rules that
        read a parent's entries unchanged, ``corrmom_ref.hyperparameter.sole_source``,
        share the check of that parent made earlier in the same pass). A
        parameter not initialised yet (array ``None``) is not checked further. Called by
        :meth:`update` before anything is modified (cleared gradients are still ``None`` then). Returns the
        ``(path, param, rule)`` of every parameter with a rule, in order.
        """
        entries = self._rules()
        # per-pass caches (each holds what was checked moments ago in this same pass):
        plain_kind = None  # the last rule class found not to be Chainer-style
        alike_kind = alike = None  # the last array type and its quick gradient test
        passed_dtype = None  # the last dtype check_parameter_dtype let through (models mostly have one)
        passed_source = passed_names = None  # the last parent whose entries passed, and their names
        for name, param, rule in entries:
            if not rule.enabled:
                continue
            array = param.array
            kind = type(rule)
            if kind is not plain_kind:
                if getattr(kind, "update_core", None) is _DISPATCHING_UPDATE_CORE:  # Chainer-style rule
                    rule.device_method(param)  # raises when no per-device method fits these arrays
                else:
                    plain_kind = kind
            if array is None:  # not initialised yet: updated as Chainer does (UpdateRule.update)
                continue
            grad = param.grad
            if grad is not None:
                if type(array) is not alike_kind:
                    alike_kind, alike = type(array), quick_alike_test(array)
                if not (type(grad) is alike_kind and alike(grad, array)):  # type: ignore[misc]
                    check_gradient(param, name)  # the common case (a gradient like its array) answered above
            dtype = array.dtype
            if dtype is not passed_dtype and rule.floating_point_only:
                check_parameter_dtype(param, name, type(rule).__name__)
                passed_dtype = dtype
            loss_scale = getattr(param, "loss_scale", None)
            if loss_scale is not None and not (
                type(loss_scale) is float and ACCEPTED_LOSS_SCALE_MIN <= loss_scale <= ACCEPTED_LOSS_SCALE_MAX
            ):  # the common case (a Python float in range) answered without a call
                check_loss_scale(loss_scale, f"parameter {name}: loss_scale")
            hyperparam, names = rule.hyperparam, rule.nonnegative_hyperparams
            source = sole_source(hyperparam)
            if source is not None and source is passed_source and names is passed_names:
                continue  # reads the entries of a parent checked in this same pass: the same values
            if quick_nonnegative_floats(hyperparam, names):
                passed_source, passed_names = source, names
            else:
                rule.check_hyperparameters(f"parameter {name}")  # raises, or passes another valid type
        return entries

    def update(self, lossfun: Callable[..., Any] | None = None, *args: Any, **kwds: Any) -> None:
        """One optimization step, in Chainer's order.

        1. With ``lossfun``: ``loss = lossfun(*args, **kwds)``; clear the
           target's gradients (zero them after ``use_cleargrads(False)``);
           ``loss.backward(loss_scale=<current loss scale>)``.
        2. Check every parameter, gradient, loss scale and hyperparameter
           (:meth:`check_update_inputs`: nothing is modified if this raises).
        3. Reallocate cleared gradients as zeros (so a parameter without a
           gradient still moves by its momentum). Chainer does this before
           any check; the order changes nothing but what a refused step
           leaves behind.
        4. With dynamic loss scaling, check gradients for non-finite values
           (:meth:`~Optimizer.check_nan_in_grads`), then ask the outside verdict if one
           is set (:meth:`set_outside_nonfinite_verdict`).
        5. Optimizer pre hooks (then the gradients are checked again).
        6. ``t += 1``, also on a skipped step.
        7. Unless a gradient was non-finite: each rule updates its parameter,
           in ``target.params()`` order (when no rule has hooks, rules of one
           kind, dtype and device run as one batch: :func:`~corrmom_ref.update_rule.update_all`).
        8. Reallocate cleared gradients; optimizer post hooks; move the
           dynamic loss scale.

        A hook that raises propagates: parameters updated before it stay
        updated, and ``t`` has advanced if step 6 was reached.
        """
        if lossfun is not None:
            self.backward_loss(lossfun, *args, **kwds)
        entries = self.check_update_inputs()
        self.reallocate_cleared_grads()
        scaling = self._loss_scaling
        nonfinite_ever = scaling.nonfinite_ever
        self.check_nan_in_grads()
        self._apply_outside_verdict()
        has_pre_hooks = bool(self._registry().names("pre"))
        try:
            if has_pre_hooks and scaling.dynamic and not scaling.clipping_warned:
                scaling.warn_clipping(self._registry().of("pre"), recipe=_REFERENCE_RECIPE, stacklevel=2)
            self.call_hooks("pre")
            if has_pre_hooks:  # the hooks may have changed anything: walk and check again
                entries = self.check_update_inputs()
        except BaseException:
            # the step did not happen: forget what its NaN check recorded
            scaling.nonfinite_ever = nonfinite_ever
            raise
        self.t += 1
        if self.is_safe_to_update():
            update_all([(param, rule) for _, param, rule in entries])
        self.reallocate_cleared_grads()
        self.call_hooks("post")
        self.update_loss_scale()

    def backward_loss(self, lossfun: Callable[..., Any], *args: Any, **kwds: Any) -> None:
        """Step 1 of :meth:`update`: compute the loss, clear the gradients, backpropagate.

        ``loss = lossfun(*args, **kwds)``; ``target.cleargrads()`` (or
        ``zerograds()`` after ``use_cleargrads(False)``);
        ``loss.backward(loss_scale=<current loss scale>)``.
        """
        loss = lossfun(*args, **kwds)
        if self._use_cleargrads:
            self.target.cleargrads()
        else:
            self.target.zerograds()
        loss.backward(loss_scale=self._loss_scaling.scale)

    def use_cleargrads(self, use: bool = True) -> None:
        """Choose ``cleargrads`` (default) or ``zerograds`` in :meth:`update` (deprecated)."""
        warnings.warn("GradientMethod.use_cleargrads is deprecated.", DeprecationWarning, stacklevel=2)
        self._use_cleargrads = use

    def use_fp32_update(self, flag: bool = True) -> None:
        """Turn the float32 master update on or off for current and future rules.

        Chainer turns it on for the current rules even when ``flag`` is false
        (a plain bug); the reference passes ``flag`` on.
        """
        self._use_fp32_update = bool(flag)
        if self.target is not None:
            for _, _, rule in self._rules():
                rule.use_fp32_update(self._use_fp32_update)


#: How to clip the true gradients with the reference (see ``docs/porting.md``).
_REFERENCE_RECIPE = (
    "register in its place a pre hook that clips at the threshold times the loss scale, "
    "opt.add_hook(lambda o: GradientClipping(threshold * o.loss_scale)(o), name='clip') "
    "(GradientHardClipping: both bounds times o.loss_scale), "
    "as docs/porting.md shows ('Clipping under loss scaling')"
)


# Chainer's deprecated aliases of the built-in hooks (``corrmom_ref._deprecated_hooks``).
WeightDecay = deprecated_alias("WeightDecay")
Lasso = deprecated_alias("Lasso")
GradientClipping = deprecated_alias("GradientClipping")
GradientNoise = deprecated_alias("GradientNoise")
GradientHardClipping = deprecated_alias("GradientHardClipping")
