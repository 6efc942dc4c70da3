"""Documented quirks the fuzz must not report, each a named rule pointing at its ``docs/quirks.md`` row.

A rule ends the comparison of a scenario at the operation where the
documented difference begins (the rest of the scenario would only repeat
it); the run counts the scenario under the rule's name. There is no
tolerance anywhere: every comparison before that point is bitwise. Each row
named here has its own test (the ``test`` column of ``docs/quirks.md``).
"""

from __future__ import annotations

from typing import Any

#: quirks.md row 4: ``use_fp32_update(False)`` turns fp32 update *on* for Chainer's current rules;
#: the reference turns it off (pinned by ``test_quirks.py::test_use_fp32_update_false_turns_it_off``).
FP32_FALSE = "quirks.md row 4 (use_fp32_update(False) on current rules)"
#: quirks.md row 10: a call both implementations refuse may leave Chainer half-updated, never the
#: reference (pinned by ``test_bad_input.py``); the scenario ends there.
BOTH_RAISED = "quirks.md row 10 (a refused call: Chainer may be half-updated)"

RULES = (FP32_FALSE, BOTH_RAISED)


def rule_for(op: tuple[Any, ...], chainer_side: Any, ref_side: Any) -> str | None:
    """The rule under which ``op`` would show a documented difference, or ``None``."""
    if op[0] == "fp32" and not op[1] and any(str(p.array.dtype) == "float16" for p in ref_side.params):
        return FP32_FALSE
    return None
