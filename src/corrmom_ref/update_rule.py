"""The per-parameter half of a gradient method: :class:`UpdateRule`."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

from array_api_compat import array_namespace, device, is_writeable_array

from corrmom_ref._backends.scalars import scalar_operand
from corrmom_ref._hooks import HookRegistry
from corrmom_ref._namespace import dtype_name, is_float16, namespace_of
from corrmom_ref._reference import keep_dtype
from corrmom_ref._scalars import check_counter
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.hyperparameter import Hyperparameter, read_entry
from corrmom_ref.link import Parameter
from corrmom_ref.serializers.base import AbstractSerializer, Deserializer
from corrmom_ref.serializers.transfer import convert_loaded, key_name, to_int

__all__ = ["UpdateRule", "update_all"]


class UpdateRule:
    """How one parameter is updated from its gradient; holds that parameter's state.

    Subclasses implement :meth:`update_core` and :meth:`init_state`, list
    their state entries in :attr:`state_keys` and their non-negative
    hyperparameters in :attr:`nonnegative_hyperparams`.

    Args:
        parent_hyperparam: The optimizer's hyperparameter this rule's
            :attr:`hyperparam` falls back to.

    Attributes:
        enabled: When false, :meth:`update` does nothing (not even ``t += 1``).
        hyperparam: This rule's hyperparameters; setting an entry overrides
            the optimizer's value for this parameter only.
        t: Number of updates this rule has made.
    """

    #: Names of the arrays in :attr:`state`, in serialization order.
    state_keys: tuple[str, ...] = ()
    #: Hyperparameters that must be finite and non-negative at update time.
    nonnegative_hyperparams: tuple[str, ...] = ()
    #: Whether the rule refuses integer and boolean parameters. If so, an
    #: optimizer's ``update()`` raises ``TypeError`` naming such a parameter
    #: before anything changes (unless its rule is disabled). Off here, on for
    #: the momentum rules.
    floating_point_only: bool = False

    def __init__(self, parent_hyperparam: Hyperparameter | None = None) -> None:
        self._state: dict[str, Any] | None = None
        self.enabled = True
        self.hyperparam = Hyperparameter(parent_hyperparam)
        self.t = 0
        self._use_fp32_update = False
        self._fp32_param: Parameter | None = None
        #: The float16 array the last master update wrote into ``param.array``.
        self._fp16_written: Any = None
        self._hooks = HookRegistry(invalid_auto_timing="post")

    @property
    def state(self) -> dict[str, Any]:
        """The state arrays by name; ``None`` until the first update or load."""
        return self._state  # type: ignore[return-value]

    def add_hook(
        self,
        hook: Callable[[UpdateRule, Parameter], Any],
        name: str | None = None,
        timing: Literal["pre", "post", "auto"] = "auto",
    ) -> None:
        """Register ``hook(rule, param)`` to run before or after :meth:`update_core`.

        Naming and timing follow the optimizer's :meth:`~Optimizer.add_hook`,
        except that with ``timing='auto'`` a hook whose ``timing`` attribute is
        invalid is filed as ``'post'`` (Chainer does so silently; this warns).
        """
        self._hooks.add(hook, name, timing)

    def remove_hook(self, name: str) -> None:
        """Unregister the hook called ``name`` (``KeyError`` if unknown)."""
        self._hooks.remove(name)

    def use_fp32_update(self, flag: bool = True) -> None:
        """Update float16 parameters through a float32 master copy.

        With the flag on, the first update of a float16 parameter makes a
        float32 copy of it; every update casts the gradient to float32, runs
        hooks and the update on the copy (the state lives in float32 too), and
        writes the copy, cast back to float16, into the parameter. The master
        copy is not serialized, as in Chainer.

        The master copy is rebuilt from ``param.array`` whenever that is no
        longer the array the last update wrote: weights assigned or loaded
        (``load_npz`` of the model) after training began are what the next
        step starts from. Chainer 7.8.1 keeps updating its stale master and
        overwrites them (a plain bug, fixed here; see ``docs/quirks``).
        A write *into* ``param.array`` (``param.array[...] = x``) keeps the
        object and is not noticed: assign a new array instead.
        """
        self._use_fp32_update = bool(flag)
        if not flag:  # updates without the master may change param.array in place
            self._fp16_written = None

    def check_hyperparameters(self, where: str) -> None:
        """Raise unless every value in :attr:`nonnegative_hyperparams` is a finite real number >= 0.

        The values are read as :meth:`update` reads them (this rule's own
        entry, else its parent's); the error names ``where`` and the
        hyperparameter. An optimizer's ``update()`` calls this for every
        enabled rule before anything changes.
        """
        hyperparam = self.hyperparam
        for name in self.nonnegative_hyperparams:
            check_nonnegative_finite(name, read_entry(hyperparam, name), where)

    def update(self, param: Parameter) -> None:
        """Update ``param`` in Chainer's order.

        ``t += 1``; choose the master copy for float16 with fp32 update on;
        create the state if there is none; divide the gradient by
        ``param.loss_scale`` if set; pre hooks; :meth:`update_core`; post
        hooks; copy the master back.
        """
        if not self.enabled:
            return
        self.t += 1
        xp = namespace_of(param.array)
        target = param
        on_master = self._use_fp32_update and is_float16(param.array.dtype)
        if on_master:
            target = self._master_copy(param, xp)
        if self._state is None:
            self._state = {}
            self.init_state(target)
        loss_scale = getattr(param, "loss_scale", None)
        if loss_scale is not None and target.grad is not None:
            target.grad = _divide(target.grad, loss_scale)
        hooks = self._hooks
        if hooks:
            for hook in hooks.of("pre"):
                hook(self, target)
        self.update_core(target)
        if hooks:
            for hook in hooks.of("post"):
                hook(self, target)
        if on_master:
            param.array = self._fp16_written = xp.astype(target.array, param.array.dtype)
            target.grad = None

    def batch_key(self, param: Parameter) -> Hashable | None:
        """A key under which this rule's next update may run together with others'.

        Rules whose keys are equal are updated by one call of
        ``type(rule).update_batch`` (see :func:`~corrmom_ref.update_rule.update_all`), which must
        leave every parameter and rule as :meth:`update` would. ``None``
        (the default) means: update alone, with :meth:`update`.
        """
        return None

    @classmethod
    def update_batch(cls, members: Sequence[tuple[Parameter, UpdateRule]]) -> None:
        """Update each ``(param, rule)`` of one batch; the default calls :meth:`update` on each."""
        for param, rule in members:
            rule.update(param)

    def _master_copy(self, param: Parameter, xp: Any) -> Parameter:
        master = self._fp32_param
        if master is None:
            master = self._fp32_param = Parameter(xp.astype(param.array, xp.float32), name=param.name)
        elif param.array is not self._fp16_written:  # assigned or loaded since the last update
            master.array = xp.astype(param.array, xp.float32)
        master.grad = None if param.grad is None else xp.astype(param.grad, xp.float32)
        return master

    def init_state(self, param: Parameter) -> None:
        """Create the entries of :attr:`state` for ``param`` (override)."""

    def update_core(self, param: Parameter) -> None:
        """Update ``param.array`` from ``param.grad`` and the state (override)."""
        raise NotImplementedError

    def state_template(self, param: Parameter) -> Mapping[str, tuple[tuple[int, ...], Any]]:
        """Shape and dtype each state entry must have for ``param``."""
        xp = array_namespace(param.array)
        dtype = param.array.dtype
        if self._use_fp32_update and is_float16(dtype):
            dtype = xp.float32
        return {key: (tuple(param.array.shape), dtype) for key in self.state_keys}

    def serialize(self, serializer: AbstractSerializer, param: Parameter | None = None) -> None:
        """Save or load ``t`` and the state (Chainer's keys: ``t``, then each state key).

        Loading needs ``param`` to check and place the arrays; it reads and
        checks every value before assigning any, so a failed load leaves the
        rule as it was.
        """
        if isinstance(serializer, Deserializer):
            if param is None:
                raise TypeError("loading an update rule needs the parameter it updates")
            self.apply_loaded(self.read_snapshot(serializer, param, where="update rule"))
            return
        serializer("t", self.t)
        if self._state is not None:
            for key in self.state_keys:
                serializer(key, self._state[key])

    def read_snapshot(
        self, serializer: AbstractSerializer, param: Parameter, where: str
    ) -> tuple[int, dict[str, Any] | None]:
        """Read and check ``t`` and the state from ``serializer``; assign nothing.

        As in Chainer: a state key missing from a strict snapshot raises
        ``KeyError`` for an enabled rule; for a disabled rule, or a non-strict
        snapshot, a rule without state is left to create it lazily (``None``)
        and a rule with state keeps that entry.
        """
        where_t = f"{where} t ({key_name(serializer, 't')})"
        t = check_counter(to_int(serializer("t", self.t), where=where_t), where_t)
        template = self.state_template(param)
        xp = array_namespace(param.array)
        place = device(param.array)
        state: dict[str, Any] = {}
        for key in self.state_keys:
            current = None if self._state is None else self._state.get(key)
            try:
                value = serializer(key, current)
            except KeyError:
                if self.enabled:
                    raise
                value = current
            if value is None:
                return t, None
            if value is current:
                state[key] = current
                continue
            shape, dtype = template[key]
            dtype, cast_to = self._loaded_state_dtypes(param, dtype, current, value)
            entry = convert_loaded(
                value, xp=xp, shape=shape, dtype=dtype, device=place, what=f"{where} state {key!r}"
            )
            state[key] = entry if cast_to is None else xp.astype(entry, cast_to)
        return t, state

    def _loaded_state_dtypes(
        self, param: Parameter, expected: Any, current: Any, value: Any
    ) -> tuple[Any, Any]:
        """``(dtype a loaded state entry must have, dtype to cast it to or None)``.

        Normally ``(expected, None)`` (:meth:`state_template`). A float16
        parameter whose rule has the float32 master update on may also hold
        float16 state: state created before ``use_fp32_update()`` was called
        stays float16, in Chainer as here. Such a rule takes float16 or
        float32 state, as Chainer does: into existing state the value is cast
        to that state's dtype (Chainer copies it in), otherwise it keeps its
        own dtype.
        """
        if not (self._use_fp32_update and is_float16(param.array.dtype)):
            return expected, None
        loaded_dtype = getattr(value, "dtype", None)
        if loaded_dtype is None:
            return expected, None
        xp = namespace_of(param.array)
        if is_float16(loaded_dtype):
            accepted = param.array.dtype
        elif dtype_name(loaded_dtype) == "float32":
            accepted = xp.float32
        else:
            return expected, None  # refused by convert_loaded, naming the expected dtype
        if current is not None and dtype_name(current.dtype) != dtype_name(accepted):
            return accepted, current.dtype
        return accepted, None

    def apply_loaded(self, loaded: tuple[int, dict[str, Any] | None]) -> None:
        """Assign what :meth:`read_snapshot` returned."""
        self.t, self._state = loaded


def update_all(pairs: Sequence[tuple[Parameter, UpdateRule]]) -> None:
    """``rule.update(param)`` for every pair, with the same result as that loop.

    Rules with equal :meth:`~corrmom_ref.UpdateRule.batch_key` are updated together by one
    :meth:`~corrmom_ref.UpdateRule.update_batch` call (on PyTorch and JAX: one native
    kernel for all of them), the others one by one. Batching needs that no
    rule has hooks: a rule hook receives one parameter but may look at
    others, so with hooks every rule updates in turn, in order, as in Chainer.
    """
    batches: dict[Hashable, list[tuple[Parameter, UpdateRule]]] = {}
    alone = []
    for pair in pairs:
        param, rule = pair
        if rule._hooks.any:
            for param, rule in pairs:
                rule.update(param)
            return
        key = rule.batch_key(param)
        if key is None:
            alone.append(pair)
            continue
        try:
            batch = batches.get(key)
        except TypeError:  # a backend whose device or dtype objects cannot be hashed
            alone.append(pair)
            continue
        if batch is None:
            batches[key] = [pair]
        else:
            batch.append(pair)
    for param, rule in alone:
        rule.update(param)
    for members in batches.values():
        type(members[0][1]).update_batch(members)


def _divide(grad: Any, scale: float) -> Any:
    """``grad / scale``, in place when the backend allows (as Chainer does).

    ``scale`` enters as :func:`~corrmom_ref._backends.scalars.scalar_operand`
    makes it: a NumPy scalar keeps its type on NumPy 1.x, as in Chainer.
    """
    scale = scalar_operand(namespace_of(grad), scale)
    if is_writeable_array(grad):
        grad /= scale
        return grad
    # NumPy 1.x: a 0-d float16 array divided by a Python float is a float64 scalar
    return keep_dtype(grad / scale, grad)
