r"""Chainer's two momentum updates as optax ``GradientTransformation``\ s.

:func:`corrected_momentum_sgd` is Chainer's ``CorrectedMomentumSGD``
(Goyal et al.'s eq. (9) with the sign of the buffer flipped), and
:func:`momentum_sgd` Chainer's ``MomentumSGD`` (eq. (10)):

.. math::

    \text{corrected:}\quad v_{t+1} = m\,v_t - g_t,\quad p_{t+1} = p_t + \eta_t\,v_{t+1}

    \text{uncorrected:}\quad v_{t+1} = m\,v_t - \eta_t\,g_t,\quad p_{t+1} = p_t + v_{t+1}

Both return the increment (``\eta v`` or ``v``) as the optax update, which
:func:`optax.apply_updates` adds to the parameter: the same operations in the
same order as Chainer's in-place NumPy code, each rounded in the parameter's
dtype (``\eta`` and ``m`` are cast to it first, as NumPy casts Chainer's
Python floats). XLA on a CPU with FMA instructions fuses ``m v - g`` (and,
jitted with :func:`optax.apply_updates`, ``p + \eta v``) into a multiply-add,
which skips one rounding per product; XLA kept from emitting FMA
(``XLA_FLAGS=--xla_cpu_max_isa=AVX`` on x86) reproduces Chainer's NumPy
numbers bitwise.

What stays true: the state's ``velocity`` is Chainer's ``v`` (the negative
of optax's ``trace``), it starts at zeros, and ``count`` is the number of
updates applied (Chainer's per-parameter ``UpdateRule.t``), at which a
schedule is evaluated: step ``k`` (counting from 0) uses
``learning_rate(k)``.

Inputs are held to the reference's rules, with its messages:

* ``learning_rate`` and ``momentum`` must be finite and :math:`\ge 0`
  (:func:`corrmom_ref._validation.check_nonnegative_finite`). A number or a
  concrete array is checked when the transformation is made; a schedule's
  value when ``update`` runs: run eagerly, ``update`` raises ``ValueError``
  before returning anything. Under ``jax.jit`` a schedule's value (or one
  set through ``optax.inject_hyperparams``) is a tracer, and a jitted
  function cannot raise on a value without a host callback on every step
  (which costs more than the step itself): a bad traced value becomes NaN,
  so that step's updates (and the velocity, where the value enters it) are
  NaN rather than silently wrong; the same step run under
  ``jax.disable_jit()`` raises the ``ValueError``.
* Parameters (and the velocity) must be floating point: an integer or
  boolean leaf is a ``TypeError`` naming its path, raised by ``init`` (and
  by ``update``), as the reference's ``check_parameter_dtype``.
* A ``float0`` gradient (what ``jax.grad(..., allow_int=True)`` gives for an
  integer leaf) is a ``TypeError`` naming its path; ``optax.sgd`` refuses it
  too, with an error naming no leaf. Keep such leaves out of the
  transformation (``optax.partition`` with ``optax.set_to_zero``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from corrmom_ref._step.reference import Form, corrected_increment, uncorrected_increment
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.optax._paths import chainer_path

__all__ = ["MomentumState", "corrected_momentum_sgd", "momentum_sgd"]


class MomentumState(NamedTuple):
    """State of :func:`corrected_momentum_sgd` and :func:`momentum_sgd`.

    Attributes:
        count: Updates applied so far (``int32`` scalar): Chainer's rule ``t``.
        velocity: Chainer's ``v`` for every parameter, a pytree like the
            parameters (zeros when the transformation's ``init`` makes the state).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name for it, shadowing tuple.count
    velocity: optax.Updates


def _hyperparameter(value: Any, name: str, where: str) -> Any:
    """``value`` if it is a schedule, or a number or array that is finite and >= 0 where it is
    concrete (a tracer is checked when ``update`` runs, see :func:`_checked_at`)."""
    if callable(value):
        return value
    if isinstance(value, bool) or (
        not isinstance(value, (int, float, jax.Array)) and not hasattr(value, "dtype")
    ):
        raise TypeError(f"{name} must be a number, an array or an optax schedule, got {type(value).__name__}")
    if not isinstance(value, jax.core.Tracer):
        _check_concrete(value, name, where)
    return value


def _check_concrete(value: Any, name: str, where: str) -> None:
    """Raise as the reference does unless ``value`` (a number or a scalar array) is finite and >= 0."""
    if hasattr(value, "dtype"):
        array = np.asarray(value)
        if array.shape != ():
            raise TypeError(f"{where}: hyperparameter {name!r} must be a scalar, got shape {array.shape}")
        if array.dtype.kind not in "iuf":
            raise TypeError(f"{where}: hyperparameter {name!r} must be a real number, got {value!r}")
        value = array.item()
    check_nonnegative_finite(name, value, where)


def _checked_at(value: Any, count: jax.Array, name: str, where: str) -> Any:
    """The hyperparameter's value at ``count``, checked.

    A concrete value that is negative or not finite raises the reference's
    ``ValueError``. A traced one (a schedule's value under ``jax.jit``, a value
    injected by ``optax.inject_hyperparams`` there) cannot raise: it becomes
    NaN when it is bad, so the step's updates are NaN rather than silently
    wrong (the same step under ``jax.disable_jit()`` raises the
    ``ValueError``).
    """
    at = value(count) if callable(value) else value
    if not isinstance(at, jax.core.Tracer):
        if callable(value):
            shown = "being traced" if isinstance(count, jax.core.Tracer) else int(count)
            _check_concrete(at, name, f"{where} (the schedule's value at count {shown})")
        return at
    good = jnp.isfinite(at) & (at >= 0)
    return jnp.where(good, at, jnp.nan)


def _check_leaf_dtypes(tree: Any, where: str, what: str) -> None:
    """``TypeError`` naming the first leaf of ``tree`` that is not floating point (``what``:
    ``'parameter'`` or ``'gradient of parameter'``)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = jnp.result_type(leaf)
        if dtype == jax.dtypes.float0:
            raise TypeError(
                f"{what} {chainer_path(path)} has dtype float0 (jax.grad's gradient of an integer "
                f"or boolean input): {where} updates floating-point parameters only; keep the leaf "
                f"out of the transformation (optax.partition with optax.set_to_zero)"
            )
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{what} {chainer_path(path)} has dtype {dtype}: {where} updates floating-point "
                f"parameters only; give it a floating-point array, or keep it out of the "
                f"transformation (optax.partition with optax.set_to_zero)"
            )


#: ``update`` of a transformation made here -> its ``update_unless_skipped(updates, state, keep)``:
#: the update where the traced boolean ``keep`` holds, else :func:`skipped_update`\ s and the state as it
#: was, the selects written on the buffer itself (see :func:`update_unless_skipped`).
_UPDATE_UNLESS_SKIPPED: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
    weakref.WeakKeyDictionary()
)


def skipped_update(u: jax.Array) -> jax.Array:
    r"""The update of a skipped step: :math:`-0` in every element of ``u``'s shape and dtype.

    :math:`p + (-0) = p` for every :math:`p` (a :math:`-0` and a NaN included), so
    :func:`optax.apply_updates` leaves each parameter bitwise as it was, as Chainer's skip
    does; a :math:`+0` would turn a :math:`-0` parameter into :math:`+0`. It also leaves a
    compiler nothing to add on a skipped step: with :math:`+0` LLVM may sink the addition
    of the kept and the skipped branch below their join, away from the product
    :math:`\eta v` it would fuse into a multiply-add, so that a small array (a shard)
    rounds differently from a large one.
    """
    return jnp.full_like(u, -0.0)


def update_unless_skipped(transformation: optax.GradientTransformation) -> Callable[..., Any] | None:
    """``update_unless_skipped(updates, state, keep)`` of a transformation made by this module
    (``None`` for any other): what ``jnp.where(keep, ·, ·)`` over its ``update``'s results and
    its old state gives, bit for bit, with the update computed from the kept buffer, so that
    XLA writes the buffer once (in place when donated) and reads the update from it.
    :func:`~corrmom_ref.optax.loss_scaling` uses it to skip a step."""
    return _UPDATE_UNLESS_SKIPPED.get(transformation.update)


def _momentum_transformation(
    learning_rate: optax.ScalarOrSchedule, momentum: optax.ScalarOrSchedule, form: Form
) -> optax.GradientTransformation:
    corrected = form is Form.CORRECTED
    increment_of = corrected_increment if corrected else uncorrected_increment
    where = "corrected_momentum_sgd" if corrected else "momentum_sgd"
    learning_rate = _hyperparameter(learning_rate, "learning_rate", where)
    momentum = _hyperparameter(momentum, "momentum", where)

    def init(params: optax.Params) -> MomentumState:
        _check_leaf_dtypes(params, where, "parameter")
        return MomentumState(count=jnp.zeros((), jnp.int32), velocity=optax.tree.zeros_like(params))

    def step(
        updates: optax.Updates, state: MomentumState, keep: jax.Array | None
    ) -> tuple[optax.Updates, MomentumState]:
        _check_leaf_dtypes(state.velocity, where, "parameter")
        _check_leaf_dtypes(updates, where, "gradient of parameter")
        lr = _checked_at(learning_rate, state.count, "learning_rate", where)
        m = _checked_at(momentum, state.count, "momentum", where)

        def leaf(g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
            # Chainer's NumPy code multiplies by Python floats, which NumPy
            # rounds to the array's dtype first: cast, then the same operations.
            lr_ = jnp.asarray(lr, v.dtype)
            m_ = jnp.asarray(m, v.dtype)
            g = jnp.asarray(g, v.dtype)
            u, new_v = increment_of(g, v, lr_, m_)
            if keep is None:
                return u, new_v
            # The update from the kept buffer (the same number where the step is kept), so
            # that XLA computes the buffer once, in place, and the update from it.
            new_v = jnp.where(keep, new_v, v)
            u = lr_ * new_v if corrected else new_v
            return jnp.where(keep, u, skipped_update(u)), new_v

        flat_g, treedef_ = jax.tree.flatten(updates)
        treedef: Any = treedef_
        flat_v = treedef.flatten_up_to(state.velocity)
        stepped = [leaf(g, v) for g, v in zip(flat_g, flat_v, strict=True)]
        new_updates = treedef.unflatten([u for u, _ in stepped])
        velocity = treedef.unflatten([v for _, v in stepped])
        count = optax.safe_int32_increment(state.count)
        if keep is not None:
            count = jnp.where(keep, count, state.count)
        return new_updates, MomentumState(count=count, velocity=velocity)

    def update(
        updates: optax.Updates, state: MomentumState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, MomentumState]:
        del params
        return step(updates, state, None)

    def update_unless_skipped(
        updates: optax.Updates, state: MomentumState, keep: jax.Array
    ) -> tuple[optax.Updates, MomentumState]:
        return step(updates, state, keep)

    _UPDATE_UNLESS_SKIPPED[update] = update_unless_skipped
    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]


def corrected_momentum_sgd(
    learning_rate: optax.ScalarOrSchedule = 0.01, momentum: optax.ScalarOrSchedule = 0.9
) -> optax.GradientTransformation:
    r"""Chainer's ``CorrectedMomentumSGD`` as an optax transformation (eq. (9), Chainer's sign).

    .. math:: v \leftarrow m v - g, \qquad \text{update} = \eta\,v

    so that ``optax.apply_updates`` gives :math:`p + \eta v`. Unlike
    ``optax.sgd`` (whose trace is :math:`u = -v` and whose update is
    :math:`-\eta u`), the state holds Chainer's :math:`v` and the update is
    rounded as Chainer rounds it; a changed learning rate scales the whole
    buffer, which is the momentum correction of Goyal et al.

    Rounding: :math:`\eta` and :math:`m` are cast to each parameter's dtype
    and the operations run in Chainer's order, so op by op (not jitted) the
    parameters are Chainer's bit for bit. Jitted, XLA on a CPU with FMA may
    fuse each product with the following addition (one rounding fewer per
    product); ``XLA_FLAGS=--xla_cpu_max_isa=AVX`` (x86) prevents that.

    Args:
        learning_rate: :math:`\eta`, a number or an optax schedule of the
            number of updates applied (``count``, from 0).
        momentum: :math:`m`, a number or a schedule of ``count``.

    Returns:
        An ``optax.GradientTransformation`` whose state is a
        :class:`MomentumState`. It works under ``optax.inject_hyperparams``.
    """
    return _momentum_transformation(learning_rate, momentum, Form.CORRECTED)


def momentum_sgd(
    learning_rate: optax.ScalarOrSchedule = 0.01, momentum: optax.ScalarOrSchedule = 0.9
) -> optax.GradientTransformation:
    r"""Chainer's ``MomentumSGD`` (eq. (10), uncorrected) as an optax transformation.

    .. math:: v \leftarrow m v - \eta\,g, \qquad \text{update} = v

    The buffer holds :math:`\eta`-weighted gradients, so a change of the
    learning rate acts only on new gradients (no momentum correction).

    Args:
        learning_rate: :math:`\eta`, a number or a schedule of ``count``.
        momentum: :math:`m`, a number or a schedule of ``count``.

    Returns:
        An ``optax.GradientTransformation`` whose state is a :class:`MomentumState`.
    """
    return _momentum_transformation(learning_rate, momentum, Form.UNCORRECTED)
