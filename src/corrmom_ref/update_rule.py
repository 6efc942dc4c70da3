"""The per-parameter half of a gradient method: :class:`UpdateRule`."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

from array_api_compat import array_namespace, device, is_cupy_array, is_numpy_array, is_writeable_array

from corrmom_ref._hooks import HookRegistry
from corrmom_ref._namespace import dtype_name, is_float16, namespace_of
from corrmom_ref._scalar_checks import check_counter
from corrmom_ref._step.operands import scalar_operand
from corrmom_ref._step.reference import keep_dtype
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.hyperparameter import Hyperparameter, read_entry
from corrmom_ref.link import Parameter
from corrmom_ref.serializers.base import AbstractSerializer, Deserializer
from corrmom_ref.serializers.transfer import convert_like, convert_loaded, key_name, to_int

__all__ = ["UpdateRule", "update_all"]

#: Chainer's per-device update methods, by the arrays they take (:meth:`UpdateRule.update_core`).
DEVICE_METHODS = (("update_core_cpu", "NumPy"), ("update_core_gpu", "CuPy"))


class UpdateRule:
    """How one parameter is updated from its gradient; holds that parameter's state.

    Subclasses implement :meth:`update_core` (the Array API entry point, for
    arrays of any backend) or, as rules written for Chainer do, the
    per-device :meth:`update_core_cpu` (NumPy arrays) and
    :meth:`update_core_gpu` (CuPy arrays), which the default
    :meth:`update_core` dispatches to. They create their state in
    :meth:`init_state`; every entry created there is saved and loaded.
    :attr:`state_keys` declares the entries a rule always creates, so that
    loading can check their shapes against the parameter;
    :attr:`nonnegative_hyperparams` lists the hyperparameters checked at
    update time.

    A parameter whose array is ``None`` (not initialised yet, Chainer's lazy
    initialisation) is updated as Chainer updates it: ``t += 1``, the hooks
    and :meth:`update_core` are called (a ``None`` gradient is skipped by
    the built-in rules), no state is created and no loss scale is divided out.

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

    @property
    def has_hooks(self) -> bool:
        """Whether any hook is registered on this rule (:meth:`add_hook`)."""
        return self._hooks.any

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
        hooks; copy the master back. For a parameter not initialised yet
        (array ``None``) the state and the loss scale are left alone.

        Raises:
            NotImplementedError: the rule has neither :meth:`update_core`
                nor the device method for ``param``'s arrays (raised before
                anything changes).
        """
        if not self.enabled:
            return
        self.device_method(param)  # raises before t moves when nothing can update param
        self.t += 1
        array = param.array
        if array is None:
            self._update_uninitialized(param)
            return
        xp = namespace_of(array)
        target = param
        on_master = self._use_fp32_update and is_float16(array.dtype)
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

    def _update_uninitialized(self, param: Parameter) -> None:
        """Chainer's update of a parameter without an array: hooks and :meth:`update_core` only.

        With the fp32 update on and a parameter declared float16, they get
        the (equally uninitialised) float32 master, as in Chainer.
        """
        target = param
        if self._use_fp32_update and is_float16(_declared_dtype(param)):
            if self._fp32_param is None:
                self._fp32_param = Parameter(None, name=param.name, dtype=_float32_like(param.dtype))
            target = self._fp32_param
        for hook in self._hooks.of("pre"):
            hook(self, target)
        self.update_core(target)
        for hook in self._hooks.of("post"):
            hook(self, target)
        if target is not param:
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
        """Update ``param.array`` from ``param.grad`` and the state.

        Override this for arrays of any backend. The default calls the
        device method that fits ``param``'s arrays, as Chainer does
        (:meth:`device_method`).
        """
        method = self.device_method(param)
        assert method is not None  # device_method raises when no method fits
        method(param)

    def update_core_cpu(self, param: Parameter) -> None:
        """Update a parameter whose arrays are NumPy arrays (override; see :meth:`update_core`)."""
        raise NotImplementedError(_no_update_message(self, param))

    def update_core_gpu(self, param: Parameter) -> None:
        """Update a parameter whose arrays are CuPy arrays (override; see :meth:`update_core`)."""
        raise NotImplementedError(_no_update_message(self, param))

    def update_core_chainerx(self, param: Parameter) -> None:
        """Chainer's method for ChainerX arrays, which are not Array API arrays: never called here.

        It exists so that rules written for Chainer, which may define or
        wrap it, work unchanged; the default raises ``NotImplementedError``.
        """
        raise NotImplementedError(_no_update_message(self, param))

    def device_method(self, param: Parameter) -> Callable[[Parameter], None] | None:
        """The per-device method the default :meth:`update_core` calls for ``param``; ``None`` if overridden.

        ``None`` when :meth:`update_core` is overridden (on the class or the
        instance): that method updates arrays of every backend. Otherwise
        :meth:`update_core_cpu` for NumPy arrays (also for a parameter not
        initialised yet, whose device is the host, as in Chainer) and
        :meth:`update_core_gpu` for CuPy arrays, provided the rule overrides it.

        Raises:
            NotImplementedError: the rule has no method for ``param``'s
                arrays (its message names the rule, the parameter, the array
                type and the methods the rule has).
        """
        if type(self).update_core is not UpdateRule.update_core or "update_core" in self.__dict__:
            return None
        array = param.array
        if array is None or is_numpy_array(array):
            name = "update_core_cpu"
        elif is_cupy_array(array):
            name = "update_core_gpu"
        else:
            raise NotImplementedError(_no_update_message(self, param))
        if _overrides(self, name):
            return getattr(self, name)  # type: ignore[no-any-return]
        raise NotImplementedError(_no_update_message(self, param))

    def state_template(self, param: Parameter) -> Mapping[str, tuple[tuple[int, ...], Any]]:
        """Shape and dtype each state entry must have for ``param``."""
        xp = array_namespace(param.array)
        dtype = param.array.dtype
        if self._use_fp32_update and is_float16(dtype):
            dtype = xp.float32
        return {key: (tuple(param.array.shape), dtype) for key in self.state_keys}

    def serialize(self, serializer: AbstractSerializer, param: Parameter | None = None) -> None:
        """Save or load ``t`` and every state entry (Chainer's keys: ``t``, then each entry).

        Chainer's signature: ``serializer`` alone. Every entry the rule
        created in :meth:`init_state` is saved and loaded, declared in
        :attr:`state_keys` or not. A rule without state learns its entries
        as Chainer does, by running :meth:`init_state` on a dummy parameter
        (:meth:`read_snapshot`). ``param``, when given (an optimizer gives
        it), lets loading check the declared entries' shape and dtype and
        place every array on the parameter's backend and device; without
        it arrays are placed like the entries they replace, or kept as read.
        Loading reads and checks every value before assigning any, so a
        failed load leaves the rule as it was.
        """
        if isinstance(serializer, Deserializer):
            self.apply_loaded(self.read_snapshot(serializer, param, where="update rule"))
            return
        serializer("t", self.t)
        if self._state is not None:
            for key, value in self._state.items():
                serializer(key, value)

    def read_snapshot(
        self, serializer: AbstractSerializer, param: Parameter | None, where: str
    ) -> tuple[int, dict[str, Any] | None]:
        """Read and check ``t`` and the state from ``serializer``; assign nothing.

        The entries read are those of the current state, or, for a rule
        without state, those :meth:`init_state` creates (found as Chainer
        finds them: on a copy of the rule given a one-element float32
        dummy parameter, of ``param``'s backend and dtype when it has an
        array). As in Chainer: a state key missing from a strict snapshot
        raises ``KeyError`` for an enabled rule; for a disabled rule, or a
        non-strict snapshot, a rule without state is left to create it
        lazily (``None``) and a rule with state keeps that entry.
        """
        where_t = f"{where} t ({key_name(serializer, 't')})"
        t = check_counter(to_int(serializer("t", self.t), where=where_t), where_t)
        array = None if param is None else param.array
        template = {} if param is None or array is None else self.state_template(param)
        keys = list(self._state) if self._state is not None else self._created_state_keys(param)
        state: dict[str, Any] = {}
        for key in keys:
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
            what = f"{where} state {key!r}"
            if key in template and param is not None:
                shape, dtype = template[key]
                dtype, cast_to = self._loaded_state_dtypes(param, dtype, current, value)
                xp = array_namespace(array)
                entry = convert_loaded(
                    value, xp=xp, shape=shape, dtype=dtype, device=device(array), what=what
                )
                state[key] = entry if cast_to is None else xp.astype(entry, cast_to)
            else:
                state[key] = _loaded_entry(value, current, array, what)
        return t, state

    def _created_state_keys(self, param: Parameter | None) -> list[str]:
        """The entries :meth:`init_state` creates, learnt on a dummy parameter as Chainer does.

        :meth:`init_state` runs on a shallow copy of the rule whose state
        dict is also, for that call only, this rule's own (a Chainer-style
        ``init_state`` may write into the rule it closes over); this rule's
        state is restored afterwards. The declared :attr:`state_keys` come
        first, then any other entry in creation order.
        """
        array = None if param is None else param.array
        if array is None:
            import numpy

            dummy = Parameter(numpy.zeros(1, dtype=numpy.float32))
        else:
            dummy = Parameter(namespace_of(array).zeros((1,), dtype=array.dtype, device=device(array)))
        dummy.grad = dummy.array
        probe: dict[str, Any] = {}
        saved = self._state
        self._state = probe
        try:
            clone = copy.copy(self)
            clone.init_state(dummy)
        finally:
            self._state = saved
        return list(self.state_keys) + [key for key in probe if key not in self.state_keys]

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
        if rule.has_hooks:
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

    ``scale`` enters as :func:`~corrmom_ref._step.operands.scalar_operand`
    makes it: a NumPy scalar keeps its type on NumPy 1.x, as in Chainer.
    """
    scale = scalar_operand(namespace_of(grad), scale)
    if is_writeable_array(grad):
        grad /= scale
        return grad
    # NumPy 1.x: a 0-d float16 array divided by a Python float is a float64 scalar
    return keep_dtype(grad / scale, grad)


def _loaded_entry(value: Any, current: Any, array: Any, what: str) -> Any:
    """A loaded state entry the rule did not declare in ``state_keys``.

    Into an existing array entry: checked and converted like it (shape,
    dtype, backend, device). An array for a fresh state: read, and placed on
    the backend and device of the parameter's ``array`` when it has one (as
    Chainer sends state to the parameter's device), else kept as read.
    Anything else (a Python number into a number entry) as the serializer
    returned it.
    """
    from corrmom_ref.serializers.transfer import _is_stored

    if current is not None and hasattr(current, "shape") and hasattr(current, "dtype"):
        return convert_like(value, current, what=what)
    if _is_stored(value):
        value = value.read()
    if array is not None and hasattr(value, "shape") and hasattr(value, "dtype"):
        return namespace_of(array).asarray(value, device=device(array), copy=True)
    return value


def _overrides(rule: UpdateRule, name: str) -> bool:
    """Whether ``rule`` replaces the method ``name`` of :class:`UpdateRule` (in its class or on itself)."""
    return name in rule.__dict__ or getattr(type(rule), name) is not getattr(UpdateRule, name)


def _no_update_message(rule: UpdateRule, param: Parameter) -> str:
    """Why ``rule`` cannot update ``param``: the rule, the parameter, its array type, the methods there are."""
    array = param.array
    arrays = (
        "an uninitialised array"
        if array is None
        else f"{type(array).__module__}.{type(array).__name__} arrays"
    )
    own = [f"{name} ({kind})" for name, kind in DEVICE_METHODS if _overrides(rule, name)]
    has = ", ".join(own) if own else "neither update_core nor a device method"
    return (
        f"{type(rule).__name__} cannot update parameter {param.name!r} with {arrays}: it overrides {has}; "
        f"override update_core (the Array API entry point, any backend) to update these arrays"
    )


def _declared_dtype(param: Any) -> Any:
    """The dtype an uninitialised parameter declares, or ``None`` (Chainer raises ``RuntimeError`` then)."""
    try:
        return param.dtype
    except (AttributeError, RuntimeError):
        return None


def _float32_like(dtype: Any) -> Any:
    """float32 of the library ``dtype`` belongs to (NumPy's for NumPy dtypes and scalar types)."""
    module = sys.modules.get(type(dtype).__module__.split(".")[0])
    if module is None or not hasattr(module, "float32"):
        import numpy

        module = numpy
    float32 = module.float32
    return module.dtype(float32) if module.__name__ == "numpy" else float32
