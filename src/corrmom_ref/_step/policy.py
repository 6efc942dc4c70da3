"""Which implementation steps a list of parameters, and why: one policy, :func:`choose`.

The momentum rules step through :func:`dispatched_corrected_steps` /
:func:`dispatched_uncorrected_steps` (and their one-triple forms); these ask
:func:`choose` for a :class:`StepPath` and run it. The maths every path
computes is :mod:`corrmom_ref._step.reference`. The order, first that applies:

1. **native kernel** of the arrays' backend (:mod:`corrmom_ref._step.kernels`:
   Numba on NumPy, PyTorch's fused SGD, a JAX ``jit``, a CuPy kernel;
   corrected step only), when fast paths are on
   (:func:`corrmom_ref.fast_paths.use_fast_paths`, kept in
   :mod:`corrmom_ref._step.switch`) and its ``accepts`` takes the whole list:
   the shared check of :mod:`corrmom_ref._step.admission` plus the backend's own;
2. **per triple**, when a native kernel declined a list of several: each
   triple is chosen again on its own (one odd triple does not send the
   others to a slower path);
3. **blocked generic** (:mod:`corrmom_ref._step.blocked`), where the
   backend writes slices in place: the reference's arithmetic, blocked and
   with its scalars made once;
4. **reference** (:mod:`corrmom_ref._step.reference`), triple by triple: JAX
   without ``jit``, Dask, any backend without views.

Every path declares ``roundings``: ``0`` where it is the reference step bit
for bit, ``1`` where it may contract each product into a fused multiply-add.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any, NamedTuple

from array_api_compat import is_cupy_namespace, is_jax_namespace, is_numpy_namespace, is_torch_namespace

from corrmom_ref._step import blocked, reference, switch
from corrmom_ref._step.reference import Form

__all__ = [
    "StepPath",
    "choose",
    "dispatched_corrected_step",
    "dispatched_corrected_steps",
    "dispatched_uncorrected_step",
    "dispatched_uncorrected_steps",
    "native_kernel",
]

Array = Any
Steps = Callable[[Any, list[Array], list[Array], list[Array], Any, Any], tuple[list[Array], list[Array]]]


class StepPath(NamedTuple):
    """One implementation of a step over lists: its name, declared roundings and runner."""

    name: str
    roundings: int
    run: Steps


class _FormSteps(NamedTuple):
    """What the policy needs of one :class:`~corrmom_ref._step.reference.Form`: its reference and blocked steps."""

    form: Form
    reference: Callable[[Any, Array, Array, Array, Any, Any], tuple[Array, Array]]
    blocked: blocked.BlockedStep


_CORRECTED = _FormSteps(
    Form.CORRECTED,
    reference.corrected_step,
    blocked.BlockedStep(reference.corrected_in_place, reference.corrected_pure),
)
_UNCORRECTED = _FormSteps(
    Form.UNCORRECTED,
    reference.uncorrected_step,
    blocked.BlockedStep(reference.uncorrected_in_place, reference.uncorrected_pure),
)


def choose(
    form: Form | str, xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
) -> StepPath:
    """The path that steps these lists for ``form`` (a :class:`Form` or its value); see the module docstring."""
    return _choose(_BY_FORM[Form(form)], xp, ps, gs, vs, lr, m)


def _choose(
    form_steps: _FormSteps, xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
) -> StepPath:
    if form_steps is _CORRECTED and ps and switch.current().enabled:
        native = native_kernel(xp)
        if native is not None:
            if native.accepts(ps, gs, vs, lr, m):
                return _native_path(native)
            if len(ps) > 1:
                return _per_triple_path(form_steps, native.ROUNDINGS)
    if blocked.accepts(xp):
        return _blocked_path(form_steps)
    return _reference_path(form_steps)


def dispatched_corrected_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
) -> tuple[list[Array], list[Array]]:
    """The corrected step (eq. 9) on each ``(p, g, v)`` by the chosen path; the new ``(ps, vs)``."""
    return _choose(_CORRECTED, xp, ps, gs, vs, lr, m).run(xp, ps, gs, vs, lr, m)


def dispatched_uncorrected_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
) -> tuple[list[Array], list[Array]]:
    """The uncorrected step (eq. 10) on each ``(p, g, v)`` by the chosen path; the new ``(ps, vs)``."""
    return _choose(_UNCORRECTED, xp, ps, gs, vs, lr, m).run(xp, ps, gs, vs, lr, m)


def dispatched_corrected_step(xp: Any, p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """``dispatched_corrected_steps`` of one triple; the new ``(p, v)``."""
    new_ps, new_vs = dispatched_corrected_steps(xp, [p], [g], [v], lr, m)
    return new_ps[0], new_vs[0]


def dispatched_uncorrected_step(
    xp: Any, p: Array, g: Array, v: Array, lr: Any, m: Any
) -> tuple[Array, Array]:
    """``dispatched_uncorrected_steps`` of one triple; the new ``(p, v)``."""
    new_ps, new_vs = dispatched_uncorrected_steps(xp, [p], [g], [v], lr, m)
    return new_ps[0], new_vs[0]


@cache
def native_kernel(xp: Any) -> ModuleType | None:
    """The module of ``xp``'s native corrected-step kernel (``accepts``, ``run``, ``ROUNDINGS``), if any.

    Imported when its namespace is first seen, so a backend that is not
    used is never imported.
    """
    if is_numpy_namespace(xp):
        from corrmom_ref._step.kernels import numba

        return numba if numba.available() else None
    if is_torch_namespace(xp):
        from corrmom_ref._step.kernels import torch

        return torch if torch.available() else None
    if is_jax_namespace(xp):
        from corrmom_ref._step.kernels import jax

        return jax
    if is_cupy_namespace(xp):
        from corrmom_ref._step.kernels import cupy

        return cupy
    return None


@cache
def _native_path(native: ModuleType) -> StepPath:
    run = native.run

    def steps(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Any:
        return run(ps, gs, vs, lr, m)

    return StepPath(native.__name__.rsplit(".", 1)[-1], native.ROUNDINGS, steps)


@cache
def _per_triple_path(form_steps: _FormSteps, roundings: int) -> StepPath:
    """Each triple chosen again: at most the native kernel's roundings."""

    def steps(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Any:
        new_ps, new_vs = [], []
        for p, g, v in zip(ps, gs, vs, strict=True):
            (p,), (v,) = _choose(form_steps, xp, [p], [g], [v], lr, m).run(xp, [p], [g], [v], lr, m)
            new_ps.append(p)
            new_vs.append(v)
        return new_ps, new_vs

    return StepPath("per triple", roundings, steps)


@cache
def _blocked_path(form_steps: _FormSteps) -> StepPath:
    return StepPath("blocked generic", blocked.ROUNDINGS, form_steps.blocked.steps)


@cache
def _reference_path(form_steps: _FormSteps) -> StepPath:
    step = form_steps.reference

    def steps(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Any:
        new_ps, new_vs = [], []
        for p, g, v in zip(ps, gs, vs, strict=True):
            p, v = step(xp, p, g, v, lr, m)
            new_ps.append(p)
            new_vs.append(v)
        return new_ps, new_vs

    return StepPath("reference", 0, steps)


_BY_FORM = {steps.form: steps for steps in (_CORRECTED, _UNCORRECTED)}
