"""Selection of native fast paths for the corrected-momentum step, by backend capability.

:func:`corrected_kernel` returns, for an array namespace, a function
``(p, g, v, lr, m) -> (p, v) | None`` that runs the whole step natively (one
fused pass), or ``None`` when the backend has none; the backend module is
imported only when its namespace is first seen. A kernel returns ``None`` for
inputs it does not handle (mixed dtypes or devices, ``m == 0``, ...), and the
caller then runs the generic Array API step.

The fast paths of PyTorch, JAX and CuPy contract ``m*v - g`` and
``p + lr*v`` into fused multiply-adds, so they agree with the generic step to
within one rounding of each product (the bound ``tests/test_fast_paths.py``
checks), not bitwise; NumPy's (a Numba loop, used where Numba is installed)
rounds as the generic step does and agrees bitwise. :func:`kernel_roundings`
states which.

:func:`use_fast_paths` switches them off, e.g. to compare with the generic step,
or lets immutable backends (JAX) donate the old parameter and state buffers
to the new ones: the idiom of ``jax.jit(..., donate_argnums=...)``, opt-in
because any other reference to the previous ``param.array`` becomes invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from array_api_compat import is_cupy_namespace, is_jax_namespace, is_numpy_namespace, is_torch_namespace

__all__ = [
    "corrected_kernel",
    "corrected_multi_kernel",
    "donation_enabled",
    "kernel_roundings",
    "use_fast_paths",
]

FastKernel = Callable[[Any, Any, Any, float, float], "tuple[Any, Any] | None"]
FastMultiKernel = Callable[
    [list[Any], list[Any], list[Any], float, float], "tuple[list[Any], list[Any]] | None"
]

_enabled = True
_donate = False


@contextmanager
def use_fast_paths(enabled: bool, *, donate: bool = False) -> Iterator[None]:
    """Within the block, use (``True``) or bypass (``False``) the native fast paths.

    ``donate=True`` lets the JAX fast path reuse the buffers of the old
    parameter and state for the new ones (the old arrays are deleted).
    """
    global _enabled, _donate
    previous = _enabled, _donate
    _enabled, _donate = enabled, donate
    try:
        yield
    finally:
        _enabled, _donate = previous


def donation_enabled() -> bool:
    """Whether fast paths of immutable backends may donate the old buffers."""
    return _donate


def corrected_kernel(xp: Any) -> FastKernel | None:
    """The native corrected-momentum step for namespace ``xp``, if enabled and there is one."""
    return _kernels_for(xp)[0] if _enabled else None


def corrected_multi_kernel(xp: Any) -> FastMultiKernel | None:
    """The native corrected-momentum step over lists ``(ps, gs, vs, lr, m)`` for ``xp``, if any.

    It returns the new ``(ps, vs)``, or ``None`` for inputs it does not take
    (the caller then steps each triple with :func:`corrected_kernel`'s kernel
    or the generic step). The arrays of one call share dtype and device.
    """
    return _kernels_for(xp)[1] if _enabled else None


def kernel_roundings(xp: Any) -> int:
    """Roundings per product by which ``xp``'s native kernel may differ from the generic step.

    ``0`` where the results are bitwise equal (no kernel, or NumPy's Numba
    loop), ``1`` where the kernel fuses each product into a multiply-add.
    """
    if corrected_kernel(xp) is None or is_numpy_namespace(xp):
        return 0
    return 1


@cache
def _kernels_for(xp: Any) -> tuple[FastKernel | None, FastMultiKernel | None]:
    """``(one-parameter kernel, multi-parameter kernel)`` of ``xp``'s backend, each ``None`` if absent."""
    if is_torch_namespace(xp):
        from corrmom_ref._backends import torch_update

        if not torch_update.available():
            return None, None
        return _one_triple(torch_update.corrected_steps), torch_update.corrected_steps
    if is_jax_namespace(xp):
        from corrmom_ref._backends import jax_update

        return jax_update.corrected_step, jax_update.corrected_steps
    if is_cupy_namespace(xp):
        from corrmom_ref._backends import cupy_update

        return cupy_update.corrected_step, None
    if is_numpy_namespace(xp):
        from corrmom_ref._backends import numba_update

        if not numba_update.available():
            return None, None
        return _one_triple(numba_update.corrected_steps), numba_update.corrected_steps
    return None, None


def _one_triple(steps: FastMultiKernel) -> FastKernel:
    """The one-parameter kernel of a multi-parameter kernel that updates its lists in place."""

    def step(p: Any, g: Any, v: Any, lr: float, m: float) -> tuple[Any, Any] | None:
        return None if steps([p], [g], [v], lr, m) is None else (p, v)

    return step
