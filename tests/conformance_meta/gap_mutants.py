"""Wrong implementations that passed the suite before issue 23's checks (each verified to).

Each is one plausible bug of someone porting Chainer's optimizer, in an area
issue 23 found the suite never looked at: the sign of zeros, combinations
(float32 master with loss scaling, clipping under a loss scale), a rule
disabled after it has stepped, counters after a skipped step, large finite
float32 and float64 gradients, the second angles of properties only one
check caught, the ports' exact modes and the torch port's hooks. Exposed as
adapter factories (``--impl=tests.conformance_meta.gap_mutants:<name>``).
"""

from __future__ import annotations

import numpy as np

from corrmom_conformance.adapters.reference import ReferenceAdapter
from tests.conformance_meta.mutants import _adapter, _with_rule

# -- sign bits -------------------------------------------------------------------


def first_step_buffer_is_minus_gradient() -> ReferenceAdapter:
    """torch's habit ported to Chainer's sign: while the buffer is all zeros it becomes ``-g`` (not ``m v - g``).

    Equal in value to Chainer's step; but ``-(+0.0)`` is ``-0.0`` where
    Chainer's ``0 * m - 0.0`` is ``+0.0``, in the buffer and in a ``-0.0`` parameter.
    """

    def step(xp, p, g, v, lr, m):
        kind = p.dtype.type
        v = -g if not np.any(v) else (kind(m) * v - g).astype(p.dtype)
        return (p + kind(lr) * v).astype(p.dtype), v

    return _adapter("first_step_buffer_is_minus_gradient", _with_rule(step))


#: Which family must reject which mutant.
KILLS: list[tuple[str, str]] = [
    ("first_step_buffer_is_minus_gradient", "test_exactness"),
]

#: Mutants that need a package besides the reference's (skipped only where it is missing).
REQUIRES: dict[str, str] = {}
