r"""Chainer's loss scaling as an optax wrapper transformation.

The training step multiplies the loss by :func:`loss_scale` before
differentiating (what Chainer's ``loss.backward(loss_scale=s)`` does), and
:func:`loss_scaling` divides every gradient by the same :math:`s` before the
inner transformation sees it. With dynamic scaling (``scale=None``) it also
skips steps and moves the scale, as Chainer's ``Optimizer.update`` does:

.. math::

    s \leftarrow \operatorname{clip}\bigl(s f,\ 1,\ 65504\bigr), \qquad
    f = \begin{cases}
        1/2 & \text{a gradient of this step is not finite (the step is skipped),}\\
        2 & \text{no gradient was ever non-finite,}\\
        2^{1/\mathrm{interval}} & \text{otherwise,}
    \end{cases}

starting at :math:`s = 1`. A skipped step returns updates of :math:`-0`
(:func:`optax.apply_updates` then leaves every parameter bitwise as it was, a
:math:`-0` included) and leaves the inner state as it was (Chainer's rule
``t`` and buffers stay), while :attr:`LossScalingState.count` (Chainer's
optimizer ``t``) advances. Static
scaling (``scale`` a number) only unscales. Under ``jax.jit`` (the verdict a
tracer) every branch is a ``jnp.where`` that XLA fuses into the inner
update's own pass, so a donated state is written in place; the inner update
is computed on a skipped step too and discarded, and the warning's host
callback runs only on a skipped step (under ``jax.lax.cond``).

Rounding: the gradient is divided by :math:`s` rounded to the gradient's
dtype (NumPy rounds Chainer's Python-float scale the same way), element by
element (see :func:`_unscale`; a power of two by a product with its
reciprocal, which is the same value). The scale is
kept in JAX's default float dtype: float64 under ``jax_enable_x64``, where
the sequence equals Chainer's (Python floats) bitwise, else float32, where
the :math:`2^{1/\mathrm{interval}}` growth may round differently (powers of
two and the cap stay exact).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from corrmom_ref.loss_scaling import LOSS_SCALE_MIN, LossScaling, NonFiniteGradientWarning
from corrmom_ref.optax._momentum import skipped_update, update_unless_skipped
from corrmom_ref.optax._paths import chainer_path

__all__ = ["LossScalingState", "find_loss_scaling_state", "loss_scale", "loss_scaling"]


class LossScalingState(NamedTuple):
    """State of :func:`loss_scaling`.

    Attributes:
        count: Updates seen, skipped ones included (``int32``): Chainer's
            optimizer ``t``.
        scale: The current loss scale :math:`s` (JAX's default float dtype).
        nonfinite_ever: Whether any step so far had a non-finite gradient.
        interval: The growth interval (``int32``; ``0`` for static scaling),
            recorded for snapshots.
        inner_state: The wrapped transformation's state.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name for it, shadowing tuple.count
    scale: jax.Array
    nonfinite_ever: jax.Array
    interval: jax.Array
    inner_state: optax.OptState


def _warn_nonfinite(names: tuple[str, ...], finite: Any, count: Any, scale: Any) -> None:
    """The reference's :class:`~corrmom_ref.loss_scaling.NonFiniteGradientWarning` for every
    parameter whose gradient is not finite (its message names the parameter only)."""
    for name, ok in zip(names, finite, strict=True):
        if not bool(ok):
            warnings.warn(NonFiniteGradientWarning(name, int(count), float(scale)), stacklevel=2)


def _verdict(
    grads: list[jax.Array], names: tuple[str, ...] | None, count: jax.Array, scale: jax.Array
) -> jax.Array:
    r"""Whether every element of every gradient is finite, and :func:`_warn_nonfinite` on a
    skipped step where ``names`` are given.

    Concrete (op by op): :func:`_all_finite` per leaf, and the warning directly. Traced: the
    verdict of a first pass that is only float sums, :math:`\sum_i g_i` per leaf, over the
    rows of :func:`_verdict_rows`. A non-finite element makes that sum non-finite in any
    order of summation (an infinity is absorbed by nothing finite, :math:`\infty - \infty`
    and a NaN give NaN), so finite sums prove every element finite; only when a sum is not
    finite (a skipped step, or finite elements whose sum overflows) does a ``jax.lax.cond``
    run the exact check, :func:`_all_finite` per leaf, and on a skipped step return
    ``False`` from a ``jax.pure_callback`` that warns. A ``pure_callback`` whose result is
    used is not a side effect to JAX, so the jitted step keeps JAX's C++ dispatch; a
    ``jax.debug.callback`` is one, and sends every call of the step through Python (per
    leaf, several times the cost of a small parameter's step). The ``cond`` also hands
    every select one opaque scalar: fed the reduction of the per-leaf verdicts directly,
    XLA's compile time grows with the square of the number of leaves (minutes for 1000).
    """
    if not isinstance(grads[0], jax.core.Tracer):
        each = jnp.stack([_all_finite(g) for g in grads])
        finite = jnp.all(each)
        if names is not None and not bool(finite):
            _warn_nonfinite(names, each, count, scale)
        return finite

    rows, leaf_of_row = _verdict_rows(grads)
    row_of_leaf = np.argsort(leaf_of_row)

    def clean(rs: list[jax.Array], c: jax.Array, sc: jax.Array) -> jax.Array:
        return jnp.asarray(True)

    def warned(f: Any, c: Any, sc: Any) -> Any:
        _warn_nonfinite(names, f, c, sc)  # type: ignore[arg-type]
        return np.asarray(False)

    def skipped(each: jax.Array, c: jax.Array, sc: jax.Array) -> jax.Array:
        if names is None:
            return jnp.asarray(False)
        verdict = jax.ShapeDtypeStruct((), jnp.bool_)
        return jax.pure_callback(warned, verdict, each, c, sc, vmap_method="sequential")

    def exact(rs: list[jax.Array], c: jax.Array, sc: jax.Array) -> jax.Array:
        each = jnp.concatenate([jnp.atleast_1d(_all_finite(r, axis=-1)) for r in rs])[row_of_leaf]
        return jax.lax.cond(jnp.all(each), lambda *_: jnp.asarray(True), skipped, each, c, sc)

    sums_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(jnp.sum(r, axis=-1))) for r in rows]))
    return jax.lax.cond(sums_finite, clean, exact, rows, count, scale)


#: Gradients of at most this many elements are stacked with the others of their size and
#: dtype for the traced verdict: a small leaf's sum costs a kernel launch more than its
#: arithmetic, and a stack of a thousand such leaves is copied faster than they are summed
#: one by one; larger leaves are summed where they lie. The stacks are the step's one
#: temporary that grows with the model: a copy of these small gradients (biases, norms).
_STACKED_LEAF_SIZE = 1 << 12


def _verdict_rows(grads: list[jax.Array]) -> tuple[list[jax.Array], np.ndarray]:
    """The arrays the traced verdict sums along their last axis, and for each row (in order,
    one scalar or a stack row each) the index of its leaf in ``grads``: every gradient of
    more than :data:`_STACKED_LEAF_SIZE` elements raveled (no copy), the smaller ones
    stacked, raveled, by size and dtype (a group of one raveled alone)."""
    groups: dict[tuple[int, Any], list[int]] = {}
    rows: list[jax.Array] = []
    leaf_of_row: list[int] = []
    for i, g in enumerate(grads):
        if g.size > _STACKED_LEAF_SIZE:
            rows.append(g.ravel())
            leaf_of_row.append(i)
        else:
            groups.setdefault((g.size, g.dtype), []).append(i)
    for members in groups.values():
        if len(members) == 1:
            rows.append(grads[members[0]].ravel())
        else:
            rows.append(jnp.stack([grads[i].ravel() for i in members]))
        leaf_of_row.extend(members)
    return rows, np.asarray(leaf_of_row)


def _all_finite(g: jax.Array, axis: int | None = None) -> jax.Array:
    """Whether every element of ``g`` (along ``axis``; all of them for ``None``) is finite:
    the sum of ``g - g`` (zeros where ``g`` is finite, NaN where it is infinite or NaN) is
    finite. A floating-point sum, which XLA reduces in vector registers, where
    ``all(isfinite(g))`` reduces a boolean array."""
    return jnp.isfinite(jnp.sum(g - g, axis=axis))


def _unscale(g: jax.Array, s: jax.Array) -> jax.Array:
    r"""``g / s`` rounded as NumPy rounds Chainer's ``grad /= scale``: the quotient of ``g``
    and :math:`d`, :math:`s` rounded to ``g``'s dtype.

    Where ``g`` is real floating, :math:`d = 2^k` and :math:`1/d = 2^{-k}` is a normal
    number of that dtype, it is ``g * (1 / d)``: the product and the quotient are the
    same real number :math:`g \cdot 2^{-k}`, rounded once, so they are the same value bit
    for bit (a subnormal or a flushed result, an infinity, a NaN and :math:`-0` included),
    and a multiplication costs a fraction of a division. Dynamic scaling moves :math:`s`
    by powers of two until it first reaches its cap (65504, not one) or a non-finite
    gradient is seen (the growth is then :math:`2^{1/\mathrm{interval}}`); a static scale
    is often one. The choice is a ``jnp.where`` on a scalar, which a compiler can test
    once per loop rather than per element (XLA on CPU does: ``benchmarks/RESULTS.md``,
    "issue 22 optax rows, third pass").

    Elsewhere it divides. XLA replaces a division by a broadcast scalar with a
    multiplication by its reciprocal, which can leave a quotient one ulp off. The divisor
    here is :math:`d` where ``g`` is finite (or :math:`d` is infinite) and 1 elsewhere: not
    a broadcast XLA can see through, so it divides element by element, in the same pass as
    the rest of the step. Where 1 replaces :math:`d` the quotient is the same: a non-finite
    :math:`g` divided by a finite :math:`d \ge 0` is :math:`g` itself (an infinity keeps
    its sign, a NaN stays that NaN).
    """
    d = s.astype(g.dtype)
    one = jnp.ones((), g.dtype)
    quotient = g / jnp.where(jnp.isfinite(g) | jnp.isinf(d), d, one)
    if not jnp.issubdtype(g.dtype, jnp.floating):
        return quotient
    reciprocal = one / d
    tiny = jnp.asarray(jnp.finfo(g.dtype).tiny, g.dtype)
    exact_product = (jnp.frexp(d)[0] == 0.5) & (d >= tiny) & (reciprocal >= tiny)
    return jnp.where(exact_product, g * reciprocal, quotient)


def loss_scaling(
    inner: optax.GradientTransformation,
    interval: int = 1000,
    scale: float | None = None,
    *,
    warn: bool = True,
) -> optax.GradientTransformation:
    r"""Wrap ``inner`` in Chainer's loss scaling (dynamic for ``scale=None``, else static).

    Args:
        inner: The transformation that receives the unscaled gradients
            (:func:`~corrmom_ref.optax.corrected_momentum_sgd`, a chain, ...).
        interval: Dynamic scaling: clean steps per doubling once a
            non-finite gradient was seen (Chainer's ``interval``).
        scale: A positive number for static scaling; ``None`` for dynamic.
        warn: Dynamic scaling: warn (the reference's
            :class:`~corrmom_ref.loss_scaling.NonFiniteGradientWarning`, through
            ``jax.pure_callback`` on a skipped step) naming every parameter whose gradient is
            not finite, as Chainer does; the step and the scale are the
            warning's ``iteration`` and ``loss_scale`` attributes.

    Returns:
        An ``optax.GradientTransformation`` with a :class:`LossScalingState`.

    The configuration is checked and kept by the reference's
    :class:`~corrmom_ref.loss_scaling.LossScaling` (its ``configure``), and the
    jitted update moves the scale by that object's rule
    (:func:`~corrmom_ref.loss_scaling.next_loss_scale`: the same factors,
    multiplier and bounds) written in ``jnp``.

    Raises:
        ValueError: ``interval`` is not an integer in ``[1, 2**63 - 1]`` with
            dynamic scaling (``interval: expected an integer, got 1.5 (float)``),
            or ``scale`` is not a real number in ``[2**-126, 2**126]`` (``inf``,
            NaN, ``0``, ``'2'``, a bool: ``loss scale: ...``), the messages of
            :meth:`corrmom_ref.Optimizer.loss_scaling`. An interval beyond the
            ``int32`` the state records it in is refused too.
    """
    config = LossScaling()
    config.configure(interval, scale)
    dynamic = config.dynamic
    if dynamic and config.interval > _INT32_MAX:  # type: ignore[operator]
        raise ValueError(f"interval: loss_scaling records it as an int32, got {config.interval}")
    multiplier = config.multiplier if config.multiplier is not None else 1.0
    start, max_scale = float(config.scale), config.max_scale
    skippable = update_unless_skipped(inner)

    def init(params: optax.Params) -> LossScalingState:
        return LossScalingState(
            count=jnp.zeros((), jnp.int32),
            scale=jnp.asarray(start, dtype=float),
            nonfinite_ever=jnp.zeros((), bool),
            interval=jnp.asarray(config.interval if dynamic else 0, jnp.int32),
            inner_state=inner.init(params),
        )

    def update(
        updates: optax.Updates, state: LossScalingState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, LossScalingState]:
        s = state.scale
        unscaled = jax.tree.map(lambda g: _unscale(g, s), updates)
        count = optax.safe_int32_increment(state.count)
        if not dynamic:
            stepped, inner_state = inner.update(unscaled, state.inner_state, params)
            return stepped, state._replace(count=count, inner_state=inner_state)
        leaves_with_paths = jax.tree_util.tree_flatten_with_path(updates)[0]
        finite = jnp.asarray(True)
        if leaves_with_paths:
            names = tuple(chainer_path(path) for path, _ in leaves_with_paths) if warn else None
            finite = _verdict([g for _, g in leaves_with_paths], names, state.count, s)
        if skippable is not None:
            new_updates, kept_inner = skippable(unscaled, state.inner_state, finite)
        else:
            # Element-wise selects over the inner update's results and the old state.
            stepped, inner_state = inner.update(unscaled, state.inner_state, params)
            new_updates = jax.tree.map(lambda u: jnp.where(finite, u, skipped_update(u)), stepped)
            kept_inner = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), inner_state, state.inner_state
            )
        ever = state.nonfinite_ever | ~finite
        factor = jnp.where(finite, jnp.where(state.nonfinite_ever, multiplier, 2.0), 0.5).astype(s.dtype)
        new_scale = jnp.clip(s * factor, LOSS_SCALE_MIN, max_scale).astype(s.dtype)
        return new_updates, state._replace(
            count=count, scale=new_scale, nonfinite_ever=ever, inner_state=kept_inner
        )

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]


#: The largest interval :attr:`LossScalingState.interval` holds.
_INT32_MAX = 2**31 - 1


def find_loss_scaling_state(state: optax.OptState) -> LossScalingState | None:
    """The first :class:`LossScalingState` inside an optax state (``None`` if there is none)."""
    found = [
        node
        for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, LossScalingState))
        if isinstance(node, LossScalingState)
    ]
    return found[0] if found else None


def loss_scale(state: optax.OptState) -> jax.Array:
    """The scale to multiply the loss by before differentiating, read from a state holding a :class:`LossScalingState`.

    Raises:
        ValueError: ``state`` holds no :class:`LossScalingState`.
    """
    found = find_loss_scaling_state(state)
    if found is None:
        raise ValueError("loss_scale: the optax state holds no LossScalingState (wrap with loss_scaling)")
    return found.scale
