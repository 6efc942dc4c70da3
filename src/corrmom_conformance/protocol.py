"""The adapter protocol: what an implementation gives the suite.

An *adapter factory* is a zero-argument callable returning an :class:`Adapter`.
The suite finds it by name (``--impl=ref``), as ``package.module:factory``, or
from the ``CORRMOM_CONFORMANCE_IMPL`` environment variable.

Everything crosses the boundary as NumPy arrays keyed by parameter name, so an
adapter is a thin layer over the implementation's own API. An adapter declares
its :attr:`Adapter.capabilities`; a check that needs a capability the adapter
lacks is reported *not applicable* with the missing capability as the reason.

The capabilities, with the one-line meaning of each, are the one list
:data:`CAPABILITIES` (the Chainer-API adapters derive theirs from it).
Capabilities added later default to absent, so an adapter written before them
keeps working: the checks that need them are reported not applicable.

What an adapter must have is typed in two layers: :class:`Adapter` and
:class:`Optimizer` hold what every implementation gives; each capability that
needs members has a small protocol (:class:`SupportsState`,
:class:`SupportsGenericVariant`, ...; :data:`OPTIMIZER_PROTOCOLS` and
:data:`ADAPTER_PROTOCOLS` map capabilities to them). The suite reads nothing
else, but the optional :class:`DeclaresDeviations` and :class:`DeclaresBuiltinHookKinds`. :func:`check_adapter` and
:func:`check_optimizer` hold an implementation to the protocols of the
capabilities it declares, naming the adapter and the missing member.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

#: Every capability an adapter may declare, with what it promises.
CAPABILITIES: dict[str, str] = {
    "hyperparams": "set_lr / set_momentum between steps",
    "per_param_hyperparams": "set_param_hyperparam overrides lr or momentum for one parameter",
    "state": "state() returns each parameter's momentum buffer; state_sign says its convention",
    "counters": "t (optimizer steps) and rule_t(name) (updates of one parameter)",
    "cleared_grads": "step() accepts None for a parameter whose gradient was cleared",
    "loss_scaling": "loss_scaling(interval, scale) and loss_scale, with step() scaling grads as backward does",
    "fp32_master": "use_fp32_update(): float16 parameters updated through a float32 master copy",
    "hooks": "optimizer-level hooks (add_hook / remove_hook with Chainer's naming and timing rules)",
    "rule_hooks": "update-rule-level hooks (add_hook with level='rule')",
    "serialize_npz": "save(path) / load(path, strict) in Chainer's npz key layout",
    "epochs": "new_epoch(auto) and epoch",
    "warnings": "a skipped (non-finite) step warns, naming the parameter",
    "float16": "float16 parameters",
    "float64": "float64 parameters",
    "generic_variant": "generic_variant(): the same without native kernels; fast_path_roundings: k (0: bitwise)",
    "disabled_rules": "set_rule_enabled(name, False): that parameter's update rule does nothing (Chainer's rule.enabled)",
    "builtin_hooks": "add_builtin_hook(kind, **kwargs): Chainer's WeightDecay, Lasso, GradientClipping, "
    "GradientHardClipping, GradientLARS, GradientNoise (noise given by the suite)",
    "chainer_rounding": "each step rounds exactly as Chainer's CPU code: v *= m; v -= g; p += lr * v in the "
    "parameter's dtype (checked bitwise)",
    "exact_variant": "exact_variant(): the same implementation in its documented exact mode, which has "
    "chainer_rounding (the exactness family runs on it)",
}

#: The built-in hooks of ``builtin_hooks``, with the keyword arguments each takes.
#: ``GradientNoise``'s ``noise`` is ``noise(shape, rule_t) -> float64 ndarray``, the
#: noise to add to a gradient of that shape when its rule's ``t`` is ``rule_t``
#: (the adapter wraps it as the hook's ``noise_func`` and casts to the gradient's dtype).
BUILTIN_HOOKS: dict[str, tuple[str, ...]] = {
    "WeightDecay": ("rate",),
    "Lasso": ("rate",),
    "GradientClipping": ("threshold",),
    "GradientHardClipping": ("lower_bound", "upper_bound"),
    "GradientLARS": ("threshold", "weight_decay", "eps"),
    "GradientNoise": ("eta", "noise"),
}

Timing = Literal["pre", "post", "auto"]


@dataclass(frozen=True)
class HookEvent:
    """What a hook saw when it was called.

    Attributes:
        hook: The hook's registration name.
        param: The parameter the call was for (``None`` for a whole-optimizer call).
        grads: The gradient(s) the hook saw, as NumPy copies: for a
            per-parameter call ``{param: grad}`` (the key ``None`` where the
            adapter cannot name the parameter), else every parameter's.
        t: The optimizer's ``t`` at the call.
    """

    hook: str
    param: str | None
    grads: Mapping[str | None, np.ndarray | None]
    t: int


@dataclass(frozen=True)
class HookSpec:
    """A hook the suite asks the adapter to build and register.

    Attributes:
        name: ``name`` argument of ``add_hook`` (``None``: let the hook's own
            ``name`` attribute decide).
        attr_name: The hook object's ``name`` attribute (``None``: absent).
        timing: ``timing`` argument of ``add_hook``.
        attr_timing: The hook object's ``timing`` attribute (``None``: absent).
        per_param: The hook object's ``call_for_each_param``.
        level: ``'optimizer'`` or ``'rule'`` (then ``param`` names the rule's parameter).
        param: For ``level='rule'``, the parameter whose rule gets the hook.
        clears_grad: After recording, the hook clears this parameter's gradient
            (``'*'``: the parameter it was called for).
        scale: After recording, the hook multiplies the gradient(s) of its call
            by this (a per-parameter or rule hook: its parameter's; a
            whole-optimizer hook: every parameter's), in place, in the gradient's dtype.
        add: After recording (and scaling), the hook adds this constant to the
            same gradient(s), in place.

    A hook that modifies gradients does so in the order record, scale, add,
    clear; a gradient that is ``None`` is left alone.
    """

    name: str | None
    attr_name: str | None = None
    timing: Timing = "auto"
    attr_timing: str | None = None
    per_param: bool = False
    level: Literal["optimizer", "rule"] = "optimizer"
    param: str | None = None
    clears_grad: str | None = None
    scale: float | None = None
    add: float | None = None


@runtime_checkable
class Optimizer(Protocol):
    """One optimizer over named parameters, driven by the suite: what every optimizer gives."""

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        """One update with these *unscaled* gradients (``None``: cleared, capability ``cleared_grads``).

        With loss scaling on, the adapter scales each gradient by the current
        loss scale in the parameter's dtype, as a backward pass of a scaled
        loss would, before the implementation's update.
        """

    def params(self) -> dict[str, np.ndarray]:
        """Every parameter's current value."""


class SupportsState(Protocol):
    """Capability ``state``: the momentum buffers."""

    def state(self) -> dict[str, np.ndarray | None]:
        """Every parameter's momentum buffer (``None`` before it exists)."""


class SupportsCounters(Protocol):
    """Capability ``counters``: the optimizer's and each rule's step counts."""

    @property
    def t(self) -> int:
        """Optimizer step count."""

    def rule_t(self, name: str) -> int:
        """Number of updates the parameter ``name`` has received."""


class SupportsHyperparams(Protocol):
    """Capability ``hyperparams``: learning rate and momentum changed between steps."""

    def set_lr(self, lr: float) -> None:
        """Set the learning rate for the next steps."""

    def set_momentum(self, momentum: float) -> None:
        """Set the momentum for the next steps."""


class SupportsPerParamHyperparams(Protocol):
    """Capability ``per_param_hyperparams``: one parameter's own lr or momentum."""

    def set_param_hyperparam(self, name: str, key: str, value: float) -> None:
        """Override hyperparameter ``key`` for parameter ``name`` only."""


class SupportsLossScaling(Protocol):
    """Capability ``loss_scaling``: static and dynamic loss scaling."""

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        """Configure loss scaling (``scale=None``: dynamic)."""

    @property
    def loss_scale(self) -> float | None:
        """Current loss scale."""


class SupportsFp32Master(Protocol):
    """Capability ``fp32_master``: float16 parameters updated through a float32 copy."""

    def use_fp32_update(self) -> None:
        """Turn on the float32 master update."""


class SupportsHooks(Protocol):
    """Capabilities ``hooks`` (``level='optimizer'``) and ``rule_hooks`` (``level='rule'``)."""

    def add_hook(self, spec: HookSpec, record: Callable[[HookEvent], None]) -> None:
        """Build a hook from ``spec`` that calls ``record`` and register it.

        Errors of the implementation's ``add_hook`` propagate unchanged.
        """

    def remove_hook(self, name: str, level: str = "optimizer", param: str | None = None) -> None:
        """Unregister a hook (errors propagate)."""


class SupportsSerializeNpz(Protocol):
    """Capability ``serialize_npz``: snapshots in Chainer's npz key layout."""

    def save(self, path: str) -> None:
        """Save the optimizer's state to an npz file."""

    def load(self, path: str, strict: bool = True) -> None:
        """Load the optimizer's state from an npz file (errors propagate)."""


class SupportsEpochs(Protocol):
    """Capability ``epochs``: the epoch counter."""

    def new_epoch(self, auto: bool = False) -> None:
        """Start a new epoch."""

    @property
    def epoch(self) -> int:
        """Epoch count."""


class SupportsDisabledRules(Protocol):
    """Capability ``disabled_rules``: one parameter's update rule switched off."""

    def set_rule_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable the update rule of parameter ``name``."""


class SupportsBuiltinHooks(Protocol):
    """Capability ``builtin_hooks``: Chainer's built-in optimizer hooks."""

    def add_builtin_hook(self, kind: str, **kwargs: object) -> None:
        """Register Chainer's built-in hook ``kind`` (see :data:`BUILTIN_HOOKS`) with its
        default timing and name."""


#: The optimizer protocol each capability needs (capabilities without members are absent).
OPTIMIZER_PROTOCOLS: dict[str, type] = {
    "state": SupportsState,
    "counters": SupportsCounters,
    "hyperparams": SupportsHyperparams,
    "per_param_hyperparams": SupportsPerParamHyperparams,
    "loss_scaling": SupportsLossScaling,
    "fp32_master": SupportsFp32Master,
    "hooks": SupportsHooks,
    "rule_hooks": SupportsHooks,
    "serialize_npz": SupportsSerializeNpz,
    "epochs": SupportsEpochs,
    "disabled_rules": SupportsDisabledRules,
    "builtin_hooks": SupportsBuiltinHooks,
}


@runtime_checkable
class Adapter(Protocol):
    """An implementation, as the suite sees it: what every adapter gives."""

    #: Short name shown in reports (``'chainer'``).
    name: str
    #: Version string of the implementation.
    version: str
    #: Array backend and device, for the report header (``'numpy'``, ``'torch:cpu'``).
    backend: str
    #: Names from :data:`CAPABILITIES`.
    capabilities: frozenset[str]
    #: What :meth:`SupportsState.state` holds, in Goyal et al.'s ``u`` of eq. (9):
    #: ``-1.0`` if state is ``-u`` (Chainer), ``1.0`` if it is ``u`` (PyTorch, optax).
    state_sign: float

    def create(self, params: Mapping[str, np.ndarray], *, lr: float, momentum: float) -> Optimizer:
        """A corrected-momentum (eq. 9) optimizer over copies of ``params``.

        The optimizer also has the members of :data:`OPTIMIZER_PROTOCOLS` for
        each declared capability.
        """


class SupportsGenericVariant(Protocol):
    """Capability ``generic_variant``: the same implementation without its native kernels."""

    #: ``k``: how many roundings per product a fast step may save over the generic
    #: one (``0``: the two agree bitwise); see the fast-path family's bound.
    fast_path_roundings: float

    def generic_variant(self) -> Adapter:
        """The same implementation on the same backend with its native kernels off."""


class SupportsExactVariant(Protocol):
    """Capability ``exact_variant``: a mode of the implementation documented to round as Chainer.

    For an implementation whose default mode is fast (fused kernels, a
    compiled step) but which documents a mode with Chainer's roundings
    (``corrmom_ref.torch`` with ``fused=False``; ``corrmom_ref.optax`` run
    op by op): the exactness family checks that mode bit for bit.
    """

    def exact_variant(self) -> Adapter:
        """The same implementation on the same backend in its exact mode; its capabilities include
        ``chainer_rounding``."""


class DeclaresDeviations(Protocol):
    """Optional for any adapter: where its expected deviations are declared.

    Without it the suite reads the shipped ``expected_deviations/<name>.toml``
    (none if there is no such file).
    """

    #: A TOML file of expected deviations (``None``: the shipped one, if any).
    expected_deviations: str | os.PathLike[str] | None


class DeclaresBuiltinHookKinds(Protocol):
    """Optional with ``builtin_hooks``: the built-in hooks the implementation ships, when not all six.

    The checks of a hook not listed are reported not applicable; without
    the attribute every hook of :data:`BUILTIN_HOOKS` is checked.
    """

    #: Names from :data:`BUILTIN_HOOKS`.
    builtin_hook_kinds: frozenset[str]


#: The adapter protocol each capability needs.
ADAPTER_PROTOCOLS: dict[str, type] = {
    "generic_variant": SupportsGenericVariant,
    "exact_variant": SupportsExactVariant,
}

AdapterFactory = Callable[[], Adapter]


def members(protocol: type) -> tuple[str, ...]:
    """The public attributes and methods a protocol class declares itself (not inherited)."""
    own = [n for n in vars(protocol) if not n.startswith("_")]
    own += [n for n in vars(protocol).get("__annotations__", {}) if not n.startswith("_")]
    return tuple(dict.fromkeys(own))


def _lacks(obj: object, protocol: type) -> list[str]:
    absent = object()
    return [n for n in members(protocol) if inspect.getattr_static(obj, n, absent) is absent]


def check_adapter(adapter: object, label: str) -> None:
    """Raise ``TypeError`` naming ``label`` and each member the adapter lacks.

    Required: the members of :class:`Adapter`; then, for every declared
    capability in :data:`ADAPTER_PROTOCOLS`, that protocol's members. A
    capability not declared needs nothing.
    """
    capabilities = set(getattr(adapter, "capabilities", ()))
    _require(adapter, Adapter, ADAPTER_PROTOCOLS, capabilities, label, f"adapter {label}", "")


def check_optimizer(optimizer: object, label: str, capabilities: frozenset[str]) -> None:
    """Raise ``TypeError`` naming ``label`` and each member its optimizer lacks.

    Required: :class:`Optimizer`'s members, then those of the protocol of each
    declared capability in :data:`OPTIMIZER_PROTOCOLS`.
    """
    whose = f"the optimizer of adapter {label}"
    _require(optimizer, Optimizer, OPTIMIZER_PROTOCOLS, set(capabilities), label, whose, "its optimizer ")


def _require(
    obj: object,
    base: type,
    protocols: dict[str, type],
    capabilities: set[str],
    label: str,
    whose: str,
    subject: str,
) -> None:
    """Raise ``TypeError`` for the first of ``base`` and the declared capabilities' protocols ``obj`` falls short of."""
    missing = _lacks(obj, base)
    if missing:
        raise TypeError(
            f"{whose} lacks {', '.join(missing)} (see corrmom_conformance.protocol.{base.__name__})"
        )
    for capability in sorted(capabilities & set(protocols)):
        protocol = protocols[capability]
        missing = _lacks(obj, protocol)
        if missing:
            raise TypeError(
                f"adapter {label} declares capability {capability!r} but {subject}lacks "
                f"{', '.join(missing)} (see corrmom_conformance.protocol.{protocol.__name__})"
            )
