"""Documented quirks the fuzz must not report, each a named rule pointing at its ``docs/quirks.md`` row.

A rule ends the comparison of a scenario at the operation where the
documented difference begins (the rest of the scenario would only repeat
it); the run counts the scenario under the rule's name. There is no
tolerance anywhere: every comparison before that point is bitwise. Each row
named here has its own test (the ``test`` column of ``docs/quirks.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: quirks.md row 4: ``use_fp32_update(False)`` turns fp32 update *on* for Chainer's current rules;
#: the reference turns it off (pinned by ``chainer_agreement/test_quirks.py::test_use_fp32_update_false_turns_it_off``).
FP32_FALSE = "quirks.md row 4 (use_fp32_update(False) on current rules)"
#: quirks.md row 10: a call both implementations refuse may leave Chainer half-updated, never the
#: reference (pinned by ``optimizer/test_bad_input.py``); the scenario ends there.
BOTH_RAISED = "quirks.md row 10 (a refused call: Chainer may be half-updated)"

#: quirks.md row 17: where both ``p`` and ``lr * v`` are NaN, which NaN the sum keeps is NumPy's
#: choice by array length; the Numba loop may keep the other (pinned by
#: ``chainer_agreement/test_fuzz_found_divergences.py::test_numba_loop_differs_from_numpy_only_in_nan_bits``).
NUMBA_NAN_BITS = "quirks.md row 17 (NaN sign/payload of the Numba loop)"

#: quirks.md row 20: with dynamic loss scaling, Chainer's non-finite check raises ``TypeError`` on a
#: parameter not initialised yet; the reference skips it (pinned by
#: ``chainer_agreement/test_quirks.py::test_dynamic_nan_check_skips_uninitialized_parameters``).
LAZY_NAN_CHECK = "quirks.md row 20 (dynamic loss scaling with an uninitialised parameter)"

RULES = (FP32_FALSE, BOTH_RAISED, NUMBA_NAN_BITS, LAZY_NAN_CHECK)


def _nan_normalized(observed: Any) -> Any:
    """``observed`` with every NaN of every array replaced by one canonical NaN."""
    if isinstance(observed, tuple) and len(observed) == 3 and isinstance(observed[2], bytes):
        dtype, shape, data = observed
        array = np.frombuffer(data, dtype=dtype).copy()
        if array.dtype.kind == "f":
            array[np.isnan(array)] = np.nan
        return (dtype, shape, array.tobytes())
    if isinstance(observed, tuple):
        return tuple(_nan_normalized(x) for x in observed)
    if isinstance(observed, list):
        return [_nan_normalized(x) for x in observed]
    if isinstance(observed, dict):
        return {k: _nan_normalized(v) for k, v in observed.items()}
    return observed


def rule_for_difference(chainer: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """The rule under which two differing observations are a documented difference, or ``None``.

    Row 13 applies only while the Numba loop is in use, and only when the
    observations agree once every NaN is made the same NaN.
    """
    from corrmom_ref._step.kernels import numba as numba_update
    from corrmom_ref._step.policy import native_kernel
    from corrmom_ref._step.switch import current

    if not (current().enabled and native_kernel(np) is numba_update):
        return None
    if _nan_normalized(chainer) == _nan_normalized(ours):
        return NUMBA_NAN_BITS
    return None


def rule_for(op: tuple[Any, ...], chainer_side: Any, ref_side: Any) -> str | None:
    """The rule under which ``op`` would show a documented difference, or ``None``."""
    # a float16 parameter, now or once initialised (an uninitialised one has its spec's dtype then)
    if op[0] == "fp32" and not op[1] and any(spec[2] == "float16" for spec in ref_side.scenario.params):
        return FP32_FALSE
    if (
        op[0] in ("update", "update_loss")
        and chainer_side.opt._loss_scaling_is_dynamic
        and any(p.array is None for p in chainer_side.params)
    ):
        return LAZY_NAN_CHECK
    return None
