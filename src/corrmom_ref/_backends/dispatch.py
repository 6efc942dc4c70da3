"""Which implementation steps a list of parameters, and why: one policy, :func:`choose`.

The momentum rules call :func:`corrected_steps` / :func:`momentum_steps`
(and their one-triple forms); these ask :func:`choose` for a :class:`Path`
and run it. The order, first that applies:

1. **native kernel** of the arrays' backend (Numba on NumPy, PyTorch's fused
   SGD, a JAX ``jit``, a CuPy kernel; corrected step only), when fast paths
   are on (:func:`corrmom_ref.fast_paths.use_fast_paths`) and its
   ``accepts`` takes the whole list: the shared check of
   :mod:`corrmom_ref._backends.inputs` plus the backend's own;
2. **per triple**, when a native kernel declined a list of several: each
   triple is chosen again on its own (one odd triple does not send the
   others to a slower path);
3. **blocked generic** (:mod:`corrmom_ref._backends.generic_fast`), where the
   backend writes slices in place: the reference's arithmetic, blocked and
   with its scalars made once;
4. **reference** (:mod:`corrmom_ref._reference`), triple by triple: JAX
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

from corrmom_ref import _reference
from corrmom_ref._backends import generic_fast, switch

__all__ = [
    "Path",
    "choose",
    "corrected_step",
    "corrected_steps",
    "momentum_step",
    "momentum_steps",
    "native_kernel",
]

Array = Any
Steps = Callable[[Any, list[Array], list[Array], list[Array], Any, Any], tuple[list[Array], list[Array]]]


class Path(NamedTuple):
    """One implementation of a step over lists: its name, declared roundings and runner."""

    name: str
    roundings: int
    run: Steps


class _Rule(NamedTuple):
    """What the policy needs of one update rule: its reference step and blocked generic step."""

    name: str
    reference: Callable[[Any, Array, Array, Array, Any, Any], tuple[Array, Array]]
    blocked: generic_fast.BlockedStep


_CORRECTED = _Rule(
    "corrected",
    _reference.corrected_step,
    generic_fast.BlockedStep(_reference.corrected_in_place, _reference.corrected_pure),
)
_UNCORRECTED = _Rule(
    "uncorrected",
    _reference.momentum_step,
    generic_fast.BlockedStep(_reference.momentum_in_place, _reference.momentum_pure),
)


def choose(rule: str, xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Path:
    """The path that steps these lists for ``rule`` (``"corrected"`` or ``"uncorrected"``); see the module docstring."""
    return _choose(_RULES[rule], xp, ps, gs, vs, lr, m)


def _choose(rule: _Rule, xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Path:
    if rule is _CORRECTED and ps and switch.current().enabled:
        native = native_kernel(xp)
        if native is not None:
            if native.accepts(ps, gs, vs, lr, m):
                return _native_path(native)
            if len(ps) > 1:
                return _per_triple_path(rule, native.ROUNDINGS)
    if generic_fast.accepts(xp):
        return _blocked_path(rule)
    return _reference_path(rule)


def corrected_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
) -> tuple[list[Array], list[Array]]:
    """The corrected step (eq. 9) on each ``(p, g, v)`` by the chosen path; the new ``(ps, vs)``."""
    return _choose(_CORRECTED, xp, ps, gs, vs, lr, m).run(xp, ps, gs, vs, lr, m)


def momentum_steps(
    xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any
) -> tuple[list[Array], list[Array]]:
    """The uncorrected step (eq. 10) on each ``(p, g, v)`` by the chosen path; the new ``(ps, vs)``."""
    return _choose(_UNCORRECTED, xp, ps, gs, vs, lr, m).run(xp, ps, gs, vs, lr, m)


def corrected_step(xp: Any, p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """``corrected_steps`` of one triple; the new ``(p, v)``."""
    new_ps, new_vs = corrected_steps(xp, [p], [g], [v], lr, m)
    return new_ps[0], new_vs[0]


def momentum_step(xp: Any, p: Array, g: Array, v: Array, lr: Any, m: Any) -> tuple[Array, Array]:
    """``momentum_steps`` of one triple; the new ``(p, v)``."""
    new_ps, new_vs = momentum_steps(xp, [p], [g], [v], lr, m)
    return new_ps[0], new_vs[0]


@cache
def native_kernel(xp: Any) -> ModuleType | None:
    """The module of ``xp``'s native corrected-step kernel (``accepts``, ``run``, ``ROUNDINGS``), if any.

    Imported when its namespace is first seen, so a backend that is not
    used is never imported.
    """
    if is_numpy_namespace(xp):
        from corrmom_ref._backends import numba_update

        return numba_update if numba_update.available() else None
    if is_torch_namespace(xp):
        from corrmom_ref._backends import torch_update

        return torch_update if torch_update.available() else None
    if is_jax_namespace(xp):
        from corrmom_ref._backends import jax_update

        return jax_update
    if is_cupy_namespace(xp):
        from corrmom_ref._backends import cupy_update

        return cupy_update
    return None


@cache
def _native_path(native: ModuleType) -> Path:
    run = native.run

    def steps(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Any:
        return run(ps, gs, vs, lr, m)

    return Path(native.__name__.rsplit(".", 1)[-1], native.ROUNDINGS, steps)


@cache
def _per_triple_path(rule: _Rule, roundings: int) -> Path:
    """Each triple chosen again: at most the native kernel's roundings."""

    def steps(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Any:
        new_ps, new_vs = [], []
        for p, g, v in zip(ps, gs, vs, strict=True):
            (p,), (v,) = _choose(rule, xp, [p], [g], [v], lr, m).run(xp, [p], [g], [v], lr, m)
            new_ps.append(p)
            new_vs.append(v)
        return new_ps, new_vs

    return Path("per triple", roundings, steps)


@cache
def _blocked_path(rule: _Rule) -> Path:
    return Path("blocked generic", generic_fast.ROUNDINGS, rule.blocked.steps)


@cache
def _reference_path(rule: _Rule) -> Path:
    step = rule.reference

    def steps(xp: Any, ps: list[Array], gs: list[Array], vs: list[Array], lr: Any, m: Any) -> Any:
        new_ps, new_vs = [], []
        for p, g, v in zip(ps, gs, vs, strict=True):
            p, v = step(xp, p, g, v, lr, m)
            new_ps.append(p)
            new_vs.append(v)
        return new_ps, new_vs

    return Path("reference", 0, steps)


_RULES = {rule.name: rule for rule in (_CORRECTED, _UNCORRECTED)}
