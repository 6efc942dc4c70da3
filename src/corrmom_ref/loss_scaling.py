r"""Chainer's loss scaling: the policy as a pure function, and one object that holds the state.

With dynamic scaling the loss is multiplied by a scale :math:`s` before
backward, and every gradient is divided by :math:`s` before the update. After
each :meth:`~corrmom_ref.Optimizer.update` the scale moves:

.. math::

    s \leftarrow \operatorname{clip}\bigl(s \cdot f,\ 1,\ 65504\bigr), \qquad
    f = \begin{cases}
        1/2 & \text{a gradient of this step was not finite,}\\
        2 & \text{no gradient was ever non-finite,}\\
        2^{1/\mathrm{interval}} & \text{otherwise,}
    \end{cases}

so the scale doubles every step until the first overflow, halves on every
overflow, and afterwards doubles once per ``interval`` clean steps. It starts
at 1 and is clamped to ``[1, 65504]`` (the largest finite float16).

:class:`LossScaling` holds one optimizer's state (configuration, flags, the
rule above, its snapshot entries and their checked reader) for all three
implementations: :class:`corrmom_ref.Optimizer`,
:class:`corrmom_ref.torch.LossScaler` and :func:`corrmom_ref.optax.loss_scaling`
(whose jitted arithmetic is :func:`next_loss_scale` in ``jnp``), so their
rules and error messages are one. :class:`ClippingUnderLossScalingWarning`
says once when a clipping hook meets dynamic scaling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from corrmom_ref._scalar_checks import check_interval, check_loss_scale

__all__ = [
    "KEYS",
    "LOSS_SCALE_MAX",
    "LOSS_SCALE_MIN",
    "ClippingUnderLossScalingWarning",
    "LossScaling",
    "NonFiniteGradientWarning",
    "SavedLossScaling",
    "check_interval_argument",
    "check_scale_argument",
    "growth_multiplier",
    "next_loss_scale",
    "scaled_clipping_threshold",
]

#: The largest finite float16, Chainer's ceiling for a dynamic scale (a scale given or
#: loaded may lie anywhere in the wider range ``[2**-126, 2**126]``).
LOSS_SCALE_MAX = 65504.0
#: Chainer's floor for a dynamic scale.
LOSS_SCALE_MIN = 1.0


class NonFiniteGradientWarning(UserWarning):
    """Warned when dynamic loss scaling finds a non-finite gradient and skips the step.

    The message names the parameter and nothing that changes from step to
    step, so Python's warnings registry (one entry per distinct message and
    code location) holds at most one entry per parameter however many steps
    are skipped, and the default filter prints each parameter's first
    overflow once. The step and the scale are attributes.

    Args:
        path: The parameter's path (``/l1/W``).
        iteration: The optimizer's ``t`` before the skipped step.
        loss_scale: The loss scale the gradient was computed with.

    Attributes:
        path: As given.
        iteration: As given.
        loss_scale: As given.
    """

    def __init__(self, path: str, iteration: int, loss_scale: float | None) -> None:
        super().__init__(
            f"Non finite number found in param.grad of {path}: dynamic loss scaling skips the "
            f"step (the warning's iteration and loss_scale attributes say which step and scale)"
        )
        self.path = path
        self.iteration = iteration
        self.loss_scale = loss_scale

    def __reduce__(self) -> tuple[type, tuple[str, int, float | None]]:
        return type(self), (self.path, self.iteration, self.loss_scale)


def growth_multiplier(interval: int) -> float:
    """The per-clean-step factor :math:`2^{1/\\mathrm{interval}}` (computed as Chainer does)."""
    return math.pow(2.0, 1.0 / interval)


def next_loss_scale(
    scale: float,
    *,
    nonfinite_now: bool,
    nonfinite_ever: bool,
    multiplier: float,
    max_scale: float = LOSS_SCALE_MAX,
) -> float:
    """The scale after one update (see the module docstring)."""
    if nonfinite_now:
        factor = 0.5
    elif nonfinite_ever:
        factor = multiplier
    else:
        factor = 2.0
    return max(LOSS_SCALE_MIN, min(max_scale, scale * factor))


# -- the configuration checks shared by every implementation -----------------------------


def check_interval_argument(interval: Any) -> int:
    """``interval`` as an ``int`` if it is an integer (not a bool) in ``[1, 2**63 - 1]``.

    The rule of :meth:`corrmom_ref.Optimizer.loss_scaling`,
    :class:`corrmom_ref.torch.LossScaler` and :func:`corrmom_ref.optax.loss_scaling`.

    Raises:
        ValueError: naming ``interval`` (``interval: expected an integer, got 1.5 (float)``).
    """
    return _as_value_error(check_interval, interval, "interval")


def check_scale_argument(scale: Any) -> float:
    """``scale`` as a ``float`` if it is a real number (not a bool) in ``[2**-126, 2**126]``.

    The rule of the three implementations' static scale (see ``corrmom_ref._scalar_checks``
    for the range: the scale and its reciprocal are normal float32 numbers).

    Raises:
        ValueError: naming the loss scale (``loss scale: a loss scale must be finite and in
            [2**-126, 2**126], got inf``).
    """
    return _as_value_error(check_loss_scale, scale, "loss scale")


def _as_value_error(check: Callable[[Any, str], Any], value: Any, name: str) -> Any:
    """``check(value, name)``, its ``TypeError`` (not a number) raised as ``ValueError``: the one
    error the loss-scaling configuration has always raised for a refused argument."""
    try:
        return check(value, name)
    except TypeError as error:
        raise ValueError(str(error)) from None


# -- the state -----------------------------------------------------------------------


@dataclass(frozen=True)
class SavedLossScaling:
    """The loss-scaling state a snapshot records (see :meth:`LossScaling.read_entries`)."""

    #: Whether the scale is dynamic.
    dynamic: bool
    #: The scale (``None``: no loss scaling); a NumPy float16/float32 scalar when stored as one,
    #: else a Python float.
    scale: Any
    #: The growth interval (``None``: never configured dynamic).
    interval: int | None
    #: Whether any step had a non-finite gradient.
    nonfinite_ever: bool


class LossScaling:
    r"""The loss-scaling state of one optimizer: configure, record, advance, save, load.

    One object holds what Chainer keeps in the optimizer's private attributes
    (``_loss_scale``, ``_loss_scaling_is_dynamic``, ...), and every
    implementation uses it: :class:`corrmom_ref.Optimizer`,
    :class:`corrmom_ref.torch.LossScaler` and (for the configuration and
    its checks) :func:`corrmom_ref.optax.loss_scaling`, whose jitted
    arithmetic is this object's :meth:`advance` written in ``jnp``.

    Per step: :meth:`record` whether a gradient was not finite, then
    :meth:`advance` moves a dynamic scale by :func:`next_loss_scale`.

    Attributes:
        dynamic: Whether the scale follows the dynamic rule.
        scale: The current scale (``None``: no loss scaling).
        interval: The growth interval (``None`` until configured dynamic).
        multiplier: :math:`2^{1/\mathrm{interval}}` (``None`` with ``interval``).
        nonfinite_now: Whether the step being taken had a non-finite gradient.
        nonfinite_ever: Whether any step had one.
        max_scale: The ceiling of the dynamic scale (65504).
        clipping_warned: Whether :meth:`warn_clipping` has warned.
    """

    def __init__(self) -> None:
        self.dynamic = False
        # cast, not annotations: the class docstring documents the attributes (an annotated
        # assignment would document them a second time)
        self.scale = cast(Any, None)
        self.interval = cast("int | None", None)
        self.multiplier = cast("float | None", None)
        self.nonfinite_now = False
        self.nonfinite_ever = False
        self.max_scale = LOSS_SCALE_MAX
        self.clipping_warned = False

    def configure(self, interval: Any = 1000, scale: Any = None, *, stacklevel: int = 2) -> None:
        """Chainer's ``Optimizer.loss_scaling(interval, scale)``, arguments checked first.

        ``scale=None``: dynamic, restarting at 1.0 with ``interval`` and no
        overflow history. A number: the static scale, kept as given (a NumPy
        scalar keeps its type, as Chainer keeps it). Chainer's quirk is kept:
        a static scale set while dynamic scaling is on leaves the dynamic flag
        (and the interval and history) as they are, so the static value keeps
        moving; that warns (``stacklevel`` as for ``warnings.warn``, counted
        from the caller of this method).

        Raises:
            ValueError: :func:`check_interval_argument` (dynamic) or
                :func:`check_scale_argument` (static) refuses; nothing changes.
        """
        if scale is None:
            checked = check_interval_argument(interval)
            self.dynamic = True
            self.scale = 1.0
            self.interval = checked
            self.multiplier = growth_multiplier(checked)
            self.nonfinite_ever = False
            return
        check_scale_argument(scale)
        if self.dynamic:
            warnings.warn(
                "static loss scale set while dynamic loss scaling is on: as in Chainer, the "
                "dynamic policy stays on and will keep changing this scale",
                stacklevel=stacklevel + 1,
            )
        self.scale = scale

    def record(self, nonfinite: bool) -> None:
        """Record whether this step's gradients hold a non-finite value (``nonfinite_ever`` only grows)."""
        self.nonfinite_now = bool(nonfinite)
        if nonfinite:
            self.nonfinite_ever = True

    def advance(self) -> None:
        """Move a dynamic scale once, by :func:`next_loss_scale` (static or none: no change)."""
        if not self.dynamic:
            return
        assert self.scale is not None and self.multiplier is not None
        self.scale = next_loss_scale(
            self.scale,
            nonfinite_now=self.nonfinite_now,
            nonfinite_ever=self.nonfinite_ever,
            multiplier=self.multiplier,
            max_scale=self.max_scale,
        )

    # -- snapshots ------------------------------------------------------------------

    def snapshot_entries(self) -> dict[str, Any]:
        """The ``loss_scaling.*`` snapshot entries of this state, in the order they are written.

        ``dynamic`` and ``nonfinite_ever`` always; ``interval`` once configured
        dynamic; ``scale`` while there is one (a NumPy float16/float32 scalar as
        it is, anything else as a Python float).
        """
        entries: dict[str, Any] = {
            KEYS["dynamic"]: bool(self.dynamic),
            KEYS["nonfinite_ever"]: bool(self.nonfinite_ever),
        }
        if self.interval is not None:
            entries[KEYS["interval"]] = int(self.interval)
        if self.scale is not None:
            entries[KEYS["scale"]] = _scale_to_save(self.scale)
        return entries

    def saved(self) -> SavedLossScaling:
        """The state a snapshot records."""
        return SavedLossScaling(self.dynamic, self.scale, self.interval, self.nonfinite_ever)

    def restore(self, saved: SavedLossScaling) -> None:
        """Take the state ``saved`` records (from :meth:`read_entries`, so already checked)."""
        self.dynamic = saved.dynamic
        self.scale = saved.scale
        self.interval = saved.interval
        self.multiplier = None if saved.interval is None else growth_multiplier(saved.interval)
        self.nonfinite_ever = saved.nonfinite_ever

    @staticmethod
    def read_entries(
        stored: Mapping[str, Any], prefix: str = "", keys: Mapping[str, str] | None = None
    ) -> SavedLossScaling | None:
        r"""Read and check the ``loss_scaling.*`` entries of a snapshot.

        Args:
            stored: The snapshot's values by key (without ``prefix``): NumPy
                scalars, 0-d arrays, unread npz members or Python values.
            prefix: What the keys are stored under, for the messages
                (``'updater/optimizer:main/'``).
            keys: The key of each part (default :data:`KEYS`, the snapshot's).

        Returns:
            ``None`` when none of the four keys is there (Chainer's snapshots:
            the caller keeps its current configuration), else the state.

        Rules: ``dynamic`` and ``nonfinite_ever`` are bools (a NumPy or Python
        bool; ``0.0`` and ``1`` are not); ``interval`` an integer in
        :math:`[1, 2^{63}-1]`; ``scale`` a real number in
        :math:`[2^{-126}, 2^{126}]` (so neither it nor its reciprocal over- or
        underflows in float32; strings, datetimes and complex numbers are
        refused). A dynamic state needs all four keys; a static one needs
        ``dynamic`` and ``nonfinite_ever`` (without ``scale`` it records no
        loss scaling).

        Raises:
            KeyError: some ``loss_scaling.*`` keys are there and a needed one
                is not (the message names it).
            TypeError: a value of the wrong kind (named by its key).
            ValueError: a value out of range (named by its key).
        """
        from corrmom_ref.serializers.transfer import to_flag, to_float, to_int

        keys = KEYS if keys is None else keys
        present = {name: stored[key] for name, key in keys.items() if key in stored}
        if not present:
            return None

        def where(name: str) -> str:
            return repr(prefix + keys[name])

        def require(name: str, why: str) -> Any:
            if name not in present:
                raise KeyError(
                    f"{where(name)} is missing from a loss-scaling state that holds other keys "
                    f"({why}); a snapshot holds all of them or none"
                )
            return present[name]

        dynamic = to_flag(require("dynamic", "every loss-scaling state has it"), where("dynamic"))
        ever = to_flag(require("nonfinite_ever", "every loss-scaling state has it"), where("nonfinite_ever"))
        interval = scale = None
        if dynamic or "interval" in present:
            stored_interval = require("interval", "a dynamic loss scale has one")
            interval = check_interval(to_int(stored_interval, where("interval")), where("interval"))
        if dynamic or "scale" in present or "interval" in present:
            why = "a dynamic loss scale has one" if dynamic else "a state with an interval has a scale"
            stored_scale = require("scale", why)
            value = check_loss_scale(to_float(stored_scale, where("scale")), where("scale"))
            scale = _loaded_scale(stored_scale, value)
        return SavedLossScaling(dynamic, scale, interval, ever)

    # -- clipping under dynamic scaling ---------------------------------------------------

    def warn_clipping(self, hooks: Iterable[Any], *, recipe: str, stacklevel: int = 2) -> None:
        """Warn once (:class:`ClippingUnderLossScalingWarning`) if a hook in ``hooks``
        clips loss-scaled gradients while the scale is dynamic.

        ``recipe`` says how to clip the true gradients in the caller's framework;
        ``stacklevel`` as for ``warnings.warn``, counted from the caller of this method.
        """
        if self.clipping_warned or not self.dynamic or self.scale is None:
            return
        for hook in hooks:
            effective = scaled_clipping_threshold(hook, self.scale)
            if effective is not None:
                self.clipping_warned = True
                warnings.warn(
                    ClippingUnderLossScalingWarning(type(hook).__name__, effective, recipe),
                    stacklevel=stacklevel + 1,
                )
                return


#: The snapshot key of each part of the state. Chainer saves none of them;
#: the dot makes them impossible as Chainer link or parameter names, and
#: Chainer ignores keys it does not ask for, so such snapshots load in Chainer.
KEYS = {
    "dynamic": "loss_scaling.dynamic",
    "nonfinite_ever": "loss_scaling.nonfinite_ever",
    "interval": "loss_scaling.interval",
    "scale": "loss_scaling.scale",
}


def _scale_to_save(scale: Any) -> Any:
    """The loss scale as saved: a NumPy float16/float32 scalar as it is (its type changes 0-d
    arithmetic on NumPy 1.x: ``corrmom_ref._step.operands``), anything else as a Python float."""
    dtype = getattr(scale, "dtype", None)
    if dtype is not None and str(dtype) in ("float16", "float32") and not getattr(scale, "shape", ()):
        return scale
    return float(scale)


def _loaded_scale(stored: Any, value: float) -> Any:
    """The loaded loss scale: a NumPy scalar of the stored float16/float32 dtype, else ``value``
    (in range, so the float16/float32 value is the stored one: no underflow to 0)."""
    dtype = getattr(stored, "dtype", None)
    if dtype is not None and str(dtype) in ("float16", "float32") and hasattr(dtype, "type"):
        return dtype.type(value)
    return value


# -- clipping under loss scaling ------------------------------------------------------


class ClippingUnderLossScalingWarning(UserWarning):
    r"""Warned once when a clipping hook runs on loss-scaled gradients under dynamic scaling.

    Chainer's optimizer pre hooks (``GradientClipping``,
    ``GradientHardClipping``) see the gradients times the loss scale
    :math:`s`, so a threshold :math:`\tau` clips the true gradients at
    :math:`\tau / s`; under dynamic scaling :math:`s` moves between 1 and
    65504. The implementations keep Chainer's numbers and say so once.

    Attributes:
        hook: The hook's class name.
        effective: What the threshold is on the true gradients at the scale of
            the step that warned (``"tau / s = ..."``).
        recipe: How to clip the true gradients instead.
    """

    def __init__(self, hook: str, effective: str, recipe: str) -> None:
        super().__init__(
            f"{hook} runs on loss-scaled gradients under dynamic loss scaling (as in Chainer): "
            f"{effective}, and it changes with the scale. To clip the true gradients, {recipe}"
        )
        self.hook, self.effective, self.recipe = hook, effective, recipe

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return type(self), (self.hook, self.effective, self.recipe)


def scaled_clipping_threshold(hook: Any, scale: float) -> str | None:
    r"""What ``hook``'s threshold is on the true gradients at loss scale ``scale``, or ``None``
    if ``hook`` is not a clipping hook that sees scaled gradients.

    ``GradientClipping(tau)`` clips the scaled norm at :math:`\tau`, the true
    norm at :math:`\tau / s`; ``GradientHardClipping(a, b)`` clips the true
    elements into :math:`[a/s, b/s]`. (``GradientLARS`` is a rule hook: it
    runs after the gradient was unscaled and is not affected.)
    """
    from corrmom_ref.optimizer_hooks import GradientClipping, GradientHardClipping

    s = float(scale)
    if isinstance(hook, GradientClipping):
        return (
            f"its threshold {hook.threshold!r} on the scaled norm is {float(hook.threshold) / s!r} "
            f"on the true gradient norm at the current scale {s!r}"
        )
    if isinstance(hook, GradientHardClipping):
        return (
            f"its bounds [{hook.lower_bound!r}, {hook.upper_bound!r}] on the scaled gradients are "
            f"[{float(hook.lower_bound) / s!r}, {float(hook.upper_bound) / s!r}] on the true "
            f"gradients at the current scale {s!r}"
        )
    return None
