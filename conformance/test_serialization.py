"""Family 5: serialize round-trips, Chainer's npz layout, strict and non-strict loading, cross-implementation files.

Chainer saves ``t``, ``epoch`` and for each parameter ``<name>/t`` and
``<name>/v`` (state in Chainer's sign); hyperparameters, hooks and the loss
scale are not saved. Parameters themselves are saved with the model, so a
resumed optimizer is made on the parameters as they were at the snapshot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import oracle
from conformance.applicability import require
from conformance.compare import drive
from conformance.fixtures import chainer_snapshot as golden
from conformance.strategies import cases

W0 = {"W": np.array([1.0, -2.0, 0.5]), "b": np.array([0.25])}
GRADS = [{"W": np.array([0.5, 1.0, -1.0]) * (k + 1), "b": np.array([2.0 - k])} for k in range(4)]


def _steps(lr: float = 0.5, m: float = 0.9) -> list[oracle.Step]:
    return [oracle.Step(g, {"W": lr, "b": lr}, {"W": m, "b": m}) for g in GRADS]


@given(data=st.data())
def test_resume_continues_identically(impl: object, data: st.DataObject) -> None:
    """Save mid-run, load into a fresh optimizer on the same parameters, continue: bitwise equal."""
    require(impl, "serialize")
    case = data.draw(cases(constant_lr=True, cleared="cleared_grad_moves" in impl.capabilities))  # type: ignore[attr-defined]
    cut = data.draw(st.integers(1, len(case.steps)))  # before the first step there is no state to save
    n = next(iter(case.w0))
    lr, m = case.steps[0].lr[n], case.steps[0].momentum[n]
    whole = impl.make(case.w0, lr=lr, momentum=m)  # type: ignore[attr-defined]
    first = impl.make(case.w0, lr=lr, momentum=m)  # type: ignore[attr-defined]
    for step in case.steps[:cut]:
        whole.step(step.grads)
        first.step(step.grads)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "snapshot.npz")
        first.save(path)
        resumed = impl.make(first.params(), lr=lr, momentum=m)  # type: ignore[attr-defined]
        resumed.load(path)
    for k, step in enumerate(case.steps[cut:], start=cut + 1):
        whole.step(step.grads)
        resumed.step(step.grads)
        for name, value in whole.params().items():
            np.testing.assert_array_equal(
                resumed.params()[name], value,
                err_msg=f"first divergence at step {k} (snapshot after step {cut}): parameter {name}")


def test_resume_restores_step_counters(impl: object) -> None:
    """t and each rule's t come back from the snapshot."""
    require(impl, "serialize", "step_counters")
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    for g in GRADS[:3]:
        run.step(g)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "s.npz")
        run.save(path)
        fresh = impl.make(run.params(), lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
        fresh.load(path)
    assert fresh.t() == 3
    assert fresh.rule_t("W") == 3 and fresh.rule_t("b") == 3


def test_npz_key_layout(impl: object) -> None:
    """The file holds Chainer's keys with Chainer's values: t, epoch, <p>/t, <p>/v = -u."""
    require(impl, "npz_layout")
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    steps = _steps()[:2]
    for step in steps:
        run.step(step.grads)
    expected = oracle.eq9(W0, steps, exact=True)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.npz"
        run.save(str(path))
        with np.load(path, allow_pickle=False) as npz:
            saved = {k: npz[k] for k in npz.files}
    required = {"t", "epoch", "W/t", "W/v", "b/t", "b/v"}
    assert required <= set(saved), f"missing Chainer keys {sorted(required - set(saved))}; file has {sorted(saved)}"
    assert int(saved["t"]) == 2 and int(saved["epoch"]) == 0 and int(saved["W/t"]) == 2
    for n in ("W", "b"):
        np.testing.assert_allclose(saved[f"{n}/v"], -expected.u[n].astype(np.float64), rtol=1e-12,
                                   err_msg=f"{n}/v is not -u of eq. (9)")


def _save_without(run: object, tmp: str, drop: str) -> str:
    src, dst = Path(tmp) / "full.npz", Path(tmp) / "partial.npz"
    run.save(str(src))  # type: ignore[attr-defined]
    with np.load(src, allow_pickle=False) as npz:
        kept = {k: npz[k] for k in npz.files if k != drop}
    np.savez(dst, **kept)
    return str(dst)


def test_strict_load_missing_key_raises(impl: object) -> None:
    """A strict load of a snapshot without ``b/v`` raises KeyError."""
    require(impl, "serialize", "npz_layout")
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    run.step(GRADS[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = _save_without(run, tmp, "b/v")
        fresh = impl.make(run.params(), lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
        with pytest.raises(KeyError):
            fresh.load(path, strict=True)


def test_nonstrict_load_missing_key_starts_fresh_state(impl: object) -> None:
    """A non-strict load without ``b/v`` restores W's state; b's state starts at zeros."""
    require(impl, "serialize", "npz_layout", "state")
    run = impl.make(W0, lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
    run.step(GRADS[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = _save_without(run, tmp, "b/v")
        fresh = impl.make(run.params(), lr=0.5, momentum=0.9)  # type: ignore[attr-defined]
        fresh.load(path, strict=False)
    fresh.step(GRADS[1])
    np.testing.assert_allclose(fresh.velocity("W"), 0.9 * -GRADS[0]["W"] - GRADS[1]["W"], rtol=1e-12)
    np.testing.assert_allclose(fresh.velocity("b"), -GRADS[1]["b"], rtol=1e-12)


def test_continues_from_chainer_snapshot(impl: object) -> None:
    """A snapshot written by real Chainer 7.8.1 continues in this implementation as eq. (9) says."""
    require(impl, "load_chainer_npz")
    steps = [oracle.Step(g, dict.fromkeys(g, golden.LR), dict.fromkeys(g, golden.MOMENTUM))
             for g in golden.GRADS * 2]
    trajectory = oracle.eq9(golden.W0, steps, exact=True)
    at_snapshot = {n: a.astype(np.float64) for n, a in trajectory[2].w.items()}
    run = impl.make(at_snapshot, lr=golden.LR, momentum=golden.MOMENTUM)  # type: ignore[attr-defined]
    run.load(str(golden.PATH))
    if "step_counters" in impl.capabilities:  # type: ignore[attr-defined]
        assert run.t() == 3
    drive(run, steps[3:], trajectory[3:], np.dtype(np.float64),
          check_state="chainer_sign" in impl.capabilities)  # type: ignore[attr-defined]
