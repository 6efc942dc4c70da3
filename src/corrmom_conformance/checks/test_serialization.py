"""Family 5: serialize round-trips, key layout, strictness, and snapshots across implementations."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from corrmom_conformance import oracle
from corrmom_conformance.checks._support import (
    assert_trajectory,
    first_difference,
    gradients,
    problem,
    quiet,
    run,
)
from corrmom_conformance.oracle import LossScaleModel
from corrmom_conformance.tolerances import LOSS_SCALE_RTOL

pytestmark = pytest.mark.requires("serialize_npz")

SHAPES = {"W": (2, 3), "b": (3,), "l1/W": (4,)}
GOLDEN = Path(__file__).parent.parent / "fixtures"


def _lockstep(adapter, tmp_path, *, scaling: bool, steps_before: int = 4, steps_after: int = 5):
    params = problem(11, SHAPES)
    grads = gradients(11, params, steps_before + steps_after)
    if scaling:
        grads[steps_before + 1]["b"][0] = np.inf  # an overflow after the resume
    lrs = [0.1, 0.2, 0.4, 0.4, 0.1, 0.1, 0.05, 0.05, 0.05][: steps_before + steps_after]
    first = adapter.create(params, lr=lrs[0], momentum=0.9)
    if scaling:
        first.loss_scaling(interval=2)
    run(first, grads[:steps_before], lrs[:steps_before])
    path = str(tmp_path / "snapshot.npz")
    first.save(path)
    second = adapter.create(first.params(), lr=0.5, momentum=0.9)  # other lr: hyperparameters are not saved
    with quiet():
        second.load(path)
    rest, rest_lrs = grads[steps_before:], lrs[steps_before:]
    return first, second, run(first, rest, rest_lrs), run(second, rest, rest_lrs)


def test_round_trip_continues_identically(adapter, tmp_path):
    """Save mid-run, load into a fresh optimizer, continue both: bitwise the same at every step."""
    _first, _second, a, b = _lockstep(adapter, tmp_path, scaling=False)
    diff = first_difference(a, b)
    assert diff is None, f"resumed run departs at step {diff[0]} of the continuation, parameter {diff[1]!r}"


@pytest.mark.requires("counters")
def test_round_trip_restores_counters(adapter, tmp_path):
    first, second, _, _ = _lockstep(adapter, tmp_path, scaling=False)
    assert (second.t, [second.rule_t(k) for k in SHAPES]) == (first.t, [first.rule_t(k) for k in SHAPES])


@pytest.mark.requires("loss_scaling")
def test_round_trip_restores_dynamic_loss_scale(adapter, tmp_path):
    """A resumed dynamic-scaling run continues with the same scale sequence (Chainer does not save it)."""
    first, second, a, b = _lockstep(adapter, tmp_path, scaling=True)
    assert second.loss_scale == first.loss_scale, (
        f"scale after resume {second.loss_scale}, uninterrupted {first.loss_scale}"
    )
    assert first_difference(a, b) is None


def test_npz_key_layout(adapter, tmp_path):
    """Chainer's keys: t, epoch, and <path>/t, <path>/v for every parameter (nested paths included)."""
    opt = adapter.create(problem(12, SHAPES), lr=0.1, momentum=0.9)
    run(opt, gradients(12, problem(12, SHAPES), 2))
    opt.save(str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        keys = set(npz.files)
        expected = {"t", "epoch"} | {f"{k}/{e}" for k in SHAPES for e in ("t", "v")}
        assert expected <= keys, f"missing keys {sorted(expected - keys)}; has {sorted(keys)}"
        assert int(npz["t"]) == 2 and int(npz["W/t"]) == 2


def test_strict_load_of_missing_key_raises(adapter, tmp_path):
    opt = adapter.create(problem(13, SHAPES), lr=0.1, momentum=0.9)
    run(opt, gradients(13, problem(13, SHAPES), 2))
    opt.save(str(tmp_path / "full.npz"))
    with np.load(tmp_path / "full.npz", allow_pickle=False) as npz:
        partial = {k: npz[k] for k in npz.files if k != "b/v"}
    np.savez(tmp_path / "partial.npz", **partial)
    fresh = adapter.create(problem(13, SHAPES), lr=0.1, momentum=0.9)
    with pytest.raises(KeyError):
        fresh.load(str(tmp_path / "partial.npz"), strict=True)


def test_non_strict_load_of_missing_state_starts_it_at_zero(adapter, tmp_path):
    """Non-strict loading skips a missing state; the rule then starts it lazily, at zero."""
    params = problem(14, SHAPES)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    run(opt, gradients(14, params, 2))
    opt.save(str(tmp_path / "full.npz"))
    with np.load(tmp_path / "full.npz", allow_pickle=False) as npz:
        partial = {k: npz[k] for k in npz.files if k != "b/v"}
    np.savez(tmp_path / "partial.npz", **partial)
    fresh = adapter.create(opt.params(), lr=0.1, momentum=0.9)
    with quiet():
        fresh.load(str(tmp_path / "partial.npz"), strict=False)
    g = gradients(15, params, 1)
    got = run(fresh, g)
    expected_b = opt.params()["b"].astype(float) - 0.1 * g[0]["b"].astype(float)
    assert_trajectory([{"b": got[0]["b"]}], [{"b": expected_b}], np.float32)


def test_chainer_snapshot_continues_as_in_chainer(adapter):
    """A snapshot written by real Chainer 7.8.1 loads and continues exactly as Chainer continued it."""
    with np.load(GOLDEN / "golden.npz", allow_pickle=False) as npz:
        golden = {k: npz[k] for k in npz.files}
    params = {k: golden[f"snapshot_param/{k}"] for k in SHAPES}
    lrs = golden["lrs"]
    opt = adapter.create(params, lr=float(lrs[0]), momentum=0.9)
    with quiet():
        opt.load(str(GOLDEN / "golden_optimizer.npz"))
    steps = range(4, len(lrs))
    got = run(
        opt, [{k: golden[f"grad/{s}/{k}"] for k in SHAPES} for s in steps], [float(lrs[s]) for s in steps]
    )
    expected = [{k: golden[f"param/{s}/{k}"] for k in SHAPES} for s in steps]
    assert_trajectory(got, expected, np.float32, what="parameter after resuming Chainer's snapshot,")


def test_snapshot_continues_in_the_reference(adapter, tmp_path):
    """A snapshot this implementation writes continues identically in corrmom_ref (when installed)."""
    if importlib.util.find_spec("corrmom_ref") is None:
        pytest.skip("corrmom_ref is not installed beside this implementation")
    from corrmom_conformance.adapters.reference import make_adapter

    reference = make_adapter("numpy")
    params = problem(16, SHAPES)
    grads = gradients(16, params, 8)
    lrs = [0.1, 0.2, 0.4, 0.4, 0.1, 0.1, 0.05, 0.05]
    mine = adapter.create(params, lr=lrs[0], momentum=0.9)
    run(mine, grads[:4], lrs[:4])
    mine.save(str(tmp_path / "s.npz"))
    theirs = reference.create(mine.params(), lr=lrs[0], momentum=0.9)
    with quiet():
        theirs.load(str(tmp_path / "s.npz"))
    assert_trajectory(run(theirs, grads[4:], lrs[4:]), run(mine, grads[4:], lrs[4:]), np.float32)


@pytest.mark.requires("epochs")
def test_new_epoch_counts_and_round_trips(adapter, tmp_path):
    """``new_epoch()`` adds one to ``epoch`` and nothing else; the npz holds it and a fresh optimizer loads it."""
    params = problem(17, SHAPES)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    run(opt, gradients(17, params, 2))
    t_before = opt.t if "counters" in adapter.capabilities else None
    for expected in (1, 2, 3):
        opt.new_epoch()
        assert opt.epoch == expected, f"epoch after {expected} new_epoch() calls is {opt.epoch}"
    if t_before is not None:
        assert opt.t == t_before, f"new_epoch() changed t from {t_before} to {opt.t}"
    opt.save(str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert int(npz["epoch"]) == 3, f"the snapshot's epoch is {npz['epoch']}, expected 3"
    fresh = adapter.create(opt.params(), lr=0.1, momentum=0.9)
    with quiet():
        fresh.load(str(tmp_path / "s.npz"))
    assert fresh.epoch == 3, f"epoch after loading into a fresh optimizer is {fresh.epoch}, expected 3"


@pytest.mark.requires("loss_scaling")
def test_round_trip_after_an_overflow_keeps_the_slow_growth(adapter, tmp_path):
    """Saved after an overflow, a dynamic scale resumes growing by 2**(1/interval) per clean step, not doubling."""
    params = {"w": np.zeros(2, np.float32)}
    g = {"w": np.array([0.25, -0.5], np.float32)}
    bad = {"w": np.array([0.25, np.inf], np.float32)}
    first = adapter.create(params, lr=0.01, momentum=0.9)
    first.loss_scaling(interval=3)
    run(first, [g, g, g, bad, g])
    first.save(str(tmp_path / "s.npz"))
    second = adapter.create(first.params(), lr=0.01, momentum=0.9)
    second.loss_scaling(interval=3)  # as a resumed run configures it before loading
    with quiet():
        second.load(str(tmp_path / "s.npz"))
    for step in range(1, 5):
        run(first, [g])
        run(second, [g])
        assert second.loss_scale == first.loss_scale, (
            f"clean step {step} after resuming: scale {second.loss_scale}, uninterrupted run {first.loss_scale}"
        )


@pytest.mark.requires("hyperparams")
def test_load_keeps_the_optimizers_lr_and_momentum(adapter, tmp_path):
    """Snapshots hold no hyperparameters: after loading, the optimizer steps with its own lr and momentum."""
    params = problem(18, SHAPES)
    grads = gradients(18, params, 6)
    saver = adapter.create(params, lr=0.1, momentum=0.9)
    run(saver, grads[:3])
    saver.save(str(tmp_path / "s.npz"))
    own = adapter.create(saver.params(), lr=0.3, momentum=0.5)  # never told lr or momentum again
    with quiet():
        own.load(str(tmp_path / "s.npz"))
    told = adapter.create(saver.params(), lr=0.1, momentum=0.9)
    with quiet():
        told.load(str(tmp_path / "s.npz"))
    told.set_lr(0.3)
    told.set_momentum(0.5)
    a, b = run(own, grads[3:]), run(told, grads[3:])
    diff = first_difference(a, b)
    assert diff is None, (
        f"created with lr=0.3, momentum=0.5 and then loaded, the optimizer departs at step {diff[0]} "
        f"(parameter {diff[1]!r}) from one told lr=0.3, momentum=0.5 after loading: the load restored hyperparameters"
    )


@pytest.mark.requires("loss_scaling", "counters")
def test_round_trip_after_a_skipped_step_restores_counters(adapter, tmp_path):
    """Saved after an overflow was skipped (t ran one ahead of every rule's t), a fresh optimizer loads
    t and each rule's t as they were, and both continue alike (the scale is
    test_round_trip_restores_dynamic_loss_scale's business: Chainer does not save it)."""
    params = problem(19, SHAPES)
    grads = gradients(19, params, 7)
    grads[2]["b"][0] = np.inf
    first = adapter.create(params, lr=0.1, momentum=0.9)
    first.loss_scaling(interval=1)  # powers of two: unscaling is exact, whatever the scale
    run(first, grads[:4])
    assert (first.t, first.rule_t("W")) == (4, 3), (
        f"t, rule t of W after 4 steps with one skipped: {(first.t, first.rule_t('W'))}, expected (4, 3)"
    )
    first.save(str(tmp_path / "s.npz"))
    second = adapter.create(first.params(), lr=0.1, momentum=0.9)
    second.loss_scaling(interval=1)
    with quiet():
        second.load(str(tmp_path / "s.npz"))
    got = (second.t, {k: second.rule_t(k) for k in SHAPES})
    want = (first.t, {k: first.rule_t(k) for k in SHAPES})
    assert got == want, f"after loading, (t, rule t) = {got}; saved from {want}"
    diff = first_difference(run(first, grads[4:]), run(second, grads[4:]))
    assert diff is None, f"resumed run departs at step {diff[0]} of the continuation, parameter {diff[1]!r}"


@pytest.mark.requires("hyperparams")
def test_first_step_after_load_uses_the_optimizers_lr_and_momentum(adapter, tmp_path):
    """The same property as test_load_keeps_the_optimizers_lr_and_momentum from the oracle's side:
    the first step after loading is eq. (9) with the snapshot's buffer (its ``<path>/v``, Chainer's
    ``-u``) and the loading optimizer's own lr and momentum, not the saver's."""
    params = problem(20, SHAPES)
    grads = gradients(20, params, 4)
    saver = adapter.create(params, lr=0.1, momentum=0.9)
    run(saver, grads[:3])
    saver.save(str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        u = {k: -np.asarray(npz[f"{k}/v"], np.float64) for k in SHAPES}
    loader = adapter.create(saver.params(), lr=0.3, momentum=0.5)
    with quiet():
        loader.load(str(tmp_path / "s.npz"))
    got = run(loader, grads[3:])
    w = {k: v.astype(np.float64) for k, v in saver.params().items()}
    want = {k: oracle.eq9_step(w[k], u[k], grads[3][k].astype(np.float64), 0.3, 0.5)[0] for k in SHAPES}
    assert_trajectory(got, [want], np.float32, what="parameter after loading with lr=0.3, momentum=0.5,")


@pytest.mark.requires("loss_scaling")
def test_snapshot_after_an_overflow_grows_slowly_in_the_reference(adapter, tmp_path):
    """The slow growth after an overflow, from another angle than the round trip into this
    implementation: its snapshot, resumed by corrmom_ref (when installed), grows the scale by
    2**(1/interval) per clean step from the saved scale, as the oracle's loss-scale model says."""
    if importlib.util.find_spec("corrmom_ref") is None:
        pytest.skip("corrmom_ref is not installed beside this implementation")
    from corrmom_conformance.adapters.reference import make_adapter

    g = {"w": np.array([0.25, -0.5], np.float32)}
    bad = {"w": np.array([0.25, np.inf], np.float32)}
    mine = adapter.create({"w": np.zeros(2, np.float32)}, lr=0.01, momentum=0.9)
    mine.loss_scaling(interval=3)
    run(mine, [g, g, g, bad, g])
    mine.save(str(tmp_path / "s.npz"))
    saved = mine.loss_scale
    assert saved is not None
    theirs = make_adapter("numpy").create(mine.params(), lr=0.01, momentum=0.9)
    theirs.loss_scaling(interval=3)  # as a resumed run configures it before loading
    with quiet():
        theirs.load(str(tmp_path / "s.npz"))
    model = LossScaleModel(scale=saved, dynamic=True, interval=3, nonfinite_ever=True)
    for step in range(1, 5):
        run(theirs, [g])
        model.after_step(False)
        assert theirs.loss_scale is not None and math.isclose(
            theirs.loss_scale, model.scale or 0.0, rel_tol=LOSS_SCALE_RTOL
        ), (
            f"clean step {step} after the reference resumed this snapshot: scale {theirs.loss_scale}, "
            f"expected {model.scale} (saved at {saved}, after an overflow)"
        )
