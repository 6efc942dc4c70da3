r"""Scalar operands (hyperparameters, loss scales) as NumPy 1.x needs them to round as Chainer does.

The Array API defines ``x * s`` for a Python scalar ``s`` as the product in
``x``'s dtype, and the core passes hyperparameters as Python floats for that
reason. NumPy 1.x, which Chainer 7.8.1 runs on, is different in one case:
when *every* operand is a scalar or a 0-d array it promotes by the operands'
types, as it would for arrays,

.. math:: \mathrm{dtype}(v \cdot m) = \mathrm{promote}(\mathrm{dtype}(v), \mathrm{type}(m)),

so ``v *= m`` on a 0-d float32 ``v`` computes in float64 for a Python float
``m``, in float32 for ``numpy.float32(m)`` and in float16 for
``numpy.float16(m)``, then rounds into ``v``. The computation dtype, and so the
result, depends on the *type* of ``m``, not only on its value. For arrays of
rank 1 or more NumPy 1.x casts a scalar by its value (the scalar takes the
array's dtype while it fits), and a NumPy scalar and the Python float of the
same value give the same result.

:func:`scalar_operand` therefore keeps a NumPy scalar as it is when the arrays
are NumPy 1.x arrays (Chainer's arithmetic, bit for bit) and converts it to a
Python float everywhere else: under NumPy 2's promotion rules (NEP 50) and on
other backends a NumPy float32 scalar would widen float16 arithmetic, which
the reference does not do for a hyperparameter.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from array_api_compat import is_numpy_namespace

__all__ = ["keeps_scalar_types", "scalar_operand"]


@cache
def keeps_scalar_types(xp: Any) -> bool:
    """Whether ``xp`` is NumPy 1.x, whose 0-d arithmetic depends on the scalar operand's type."""
    if not is_numpy_namespace(xp):
        return False
    import numpy as np

    return int(np.__version__.split(".", 1)[0]) < 2


def scalar_operand(xp: Any, value: Any) -> Any:
    """``value`` as the scalar operand of arithmetic on ``xp``'s arrays.

    A Python float is returned as it is; a NumPy scalar (``numpy.generic``)
    too when ``xp`` is NumPy 1.x (see the module docstring); anything else as
    ``float(value)``.
    """
    if type(value) is float:
        return value
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and keeps_scalar_types(xp):
        return value
    return float(value)
