"""The switch for the native fast paths, and what each path promises.

The momentum optimizers step through the reference arithmetic
(``corrmom_ref/_step/reference.py``) or through a faster sibling chosen by one
policy (``corrmom_ref._step.policy.choose``; see the backends page). :func:`use_fast_paths`
turns the native kernels off within a block (for instance to compare them
with the generic step) or lets JAX donate buffers; :func:`kernel_roundings`
says how far a backend's native kernel may be from the reference step.

>>> import numpy as np
>>> import corrmom_ref as cr
>>> with cr.use_fast_paths(False):  # the generic Array API step only
...     pass
>>> kernel_roundings(np) in (0, 1)
True
"""

from __future__ import annotations

from typing import Any

from corrmom_ref._step import switch
from corrmom_ref._step.policy import native_kernel
from corrmom_ref._step.switch import use_fast_paths

__all__ = ["kernel_roundings", "use_fast_paths"]


def kernel_roundings(xp: Any) -> int:
    """Roundings per product by which ``xp``'s native kernel may differ from the reference step.

    ``0`` where the results are bitwise equal (fast paths off, no kernel, or
    NumPy's Numba loop); ``1`` where the kernel fuses each product into a
    multiply-add (PyTorch, JAX, CuPy). Read under the current
    :func:`use_fast_paths` setting.
    """
    if not switch.current().enabled:
        return 0
    native = native_kernel(xp)
    return 0 if native is None else int(native.ROUNDINGS)
