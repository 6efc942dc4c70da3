"""Run a scenario on real Chainer and on corrmom_ref in lockstep, comparing after every operation.

:func:`run` returns a :class:`Outcome`: the first divergence (the operation
and what differed), or none; and, when a documented quirk ended the
comparison early, the rule (:mod:`differential.quirks`) that did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from differential import quirks
from differential.scenario import Scenario
from differential.sides import ChainerSide, RefSide


@dataclass
class Outcome:
    """What a lockstep run found.

    Attributes:
        divergence: ``None``, or a description of the first difference.
        step: Index of the operation after which it was found (-1: at setup).
        ops_run: Operations applied to both sides.
        quirk: The quirk rule that ended the comparison, if any.
    """

    divergence: str | None = None
    step: int = -1
    ops_run: int = 0
    quirk: str | None = None
    notes: list[str] = field(default_factory=list)


def _show(key: Any) -> Any:
    """An observed value made readable: arrays and scalars back as NumPy values."""
    if isinstance(key, tuple) and len(key) == 3 and isinstance(key[2], bytes):
        dtype, shape, data = key
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], bytes):
        kind, data = key
        value = np.frombuffer(data, dtype=np.float64)[0]
        return value if kind == "python" else f"{kind}({value})"
    if isinstance(key, tuple):
        return tuple(_show(k) for k in key)
    if isinstance(key, dict):
        return {k: _show(v) for k, v in key.items()}
    if isinstance(key, list):
        return [_show(k) for k in key]
    return key


def _difference(chainer: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """The first entry that differs, described; ``None`` if all agree."""
    if chainer["paths"] != ours["paths"]:
        return f"parameter paths differ: chainer {chainer['paths']} ours {ours['paths']}"
    labels = (
        "array",
        "grad",
        "loss_scale",
        "rule t",
        "enabled",
        "state",
        "fp32 master",
        "rule hyperparameters",
    )
    for key in chainer:
        if key in ("paths",):
            continue
        a, b = chainer[key], ours.get(key)
        if a == b:
            continue
        if key == "optimizer":
            names = ("t", "epoch", "lr", "momentum", "loss scale")
            which = [n for n, x, y in zip(names, a, b, strict=True) if x != y]
            return f"optimizer {which}: chainer {_show(a)} ours {_show(b)}"
        if key == "calls":
            return f"hook calls differ:\n  chainer {_show(a)}\n  ours    {_show(b)}"
        which = [n for n, x, y in zip(labels, a, b, strict=True) if x != y]
        shown = [(n, _show(x), _show(y)) for n, x, y in zip(labels, a, b, strict=True) if x != y]
        return f"parameter {key}: {which} differ:\n" + "\n".join(
            f"  {n}: chainer {x!r}\n  {n}: ours    {y!r}" for n, x, y in shown
        )
    return None


def run(scenario: Scenario, cr: Any = None) -> Outcome:
    """Replay ``scenario`` on both sides (``cr``: the corrmom_ref module, default the installed one)."""
    if cr is None:
        import corrmom_ref as cr
    outcome = Outcome()
    try:
        chainer_side = ChainerSide(scenario)
    except Exception as e:  # a model Chainer cannot build is no case for the fuzz
        outcome.notes.append(f"chainer setup: {e!r}")
        return outcome
    try:
        ref_side = RefSide(scenario, cr)
    except Exception as e:  # Chainer built it: the reference must too
        outcome.divergence = f"setup: chainer built the model and optimizer, ours raised {e!r}"
        return outcome
    difference = _difference(chainer_side.observe(), ref_side.observe())
    if difference:
        outcome.divergence = "after setup: " + difference
        return outcome
    for step, op in enumerate(scenario.ops):
        rule = quirks.rule_for(op, chainer_side, ref_side)
        if rule is not None:
            outcome.quirk = rule
            return outcome
        if op[0] == "snapshot":
            source = chainer_side if op[1] == "chainer" else ref_side
            try:
                data = source.save()
            except Exception as e:
                outcome.divergence, outcome.step = f"saving a snapshot raised {e!r}", step
                return outcome
            results = [_load(side, data, op[2]) for side in (chainer_side, ref_side)]
        else:
            results = [chainer_side.run(op), ref_side.run(op)]
        (chainer_error, chainer_warnings), (ref_error, ref_warnings) = results
        outcome.ops_run = step + 1
        if (chainer_error is None) != (ref_error is None):
            outcome.divergence = f"{op!r}: chainer raised {chainer_error!r}, ours raised {ref_error!r}"
            outcome.step = step
            return outcome
        if chainer_error is not None:
            # both refused the call; Chainer may be half-updated where ours is not (quirk row 10)
            outcome.quirk = quirks.BOTH_RAISED
            outcome.notes.append(f"{op!r}: chainer {chainer_error!r}, ours {ref_error!r}")
            return outcome
        if chainer_warnings != ref_warnings:
            outcome.divergence = (
                f"{op!r}: non-finite warnings differ: chainer {chainer_warnings} ours {ref_warnings}"
            )
            outcome.step = step
            return outcome
        chainer_state, ref_state = chainer_side.observe(), ref_side.observe()
        difference = _difference(chainer_state, ref_state)
        if difference:
            rule = quirks.rule_for_difference(chainer_state, ref_state)
            if rule is not None:
                outcome.quirk = rule
                outcome.notes.append(f"{op!r}: {difference}")
                return outcome
            outcome.divergence, outcome.step = f"{op!r}: {difference}", step
            return outcome
    return outcome


def _load(side: Any, data: bytes, strict: bool) -> tuple[BaseException | None, list[Any]]:
    try:
        side.load(data, strict)
    except Exception as e:
        return e, []
    return None, []
