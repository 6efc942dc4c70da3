"""npz snapshots: Chainer's keys, round trips on every backend, and Chainer's load rules."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from backends import Backend, load
from helpers import nested_link, set_grads

import corrmom_ref as cr

CHAINER_KEYS = {"t", "epoch", "a/t", "a/v", "l1/W/t", "l1/W/v", "l1/b/t", "l1/b/v"}
LOSS_SCALING_KEYS = {"loss_scaling.dynamic", "loss_scaling.nonfinite_ever"}


def trained(bk: Backend, steps: int = 2) -> cr.GradientMethod:
    opt = cr.CorrectedMomentumSGD(lr=0.25, momentum=0.5).setup(nested_link(bk))
    for k in range(steps):
        set_grads(bk, opt.target, scale=k + 1)
        opt.update()
    opt.new_epoch()
    return opt


def to_bytes(obj: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, obj)
    buffer.seek(0)
    return buffer


def contents(buffer: io.BytesIO) -> dict[str, np.ndarray]:
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        out = {k: npz[k] for k in npz.files}
    buffer.seek(0)
    return out


def test_keys_are_chainers(bk: Backend) -> None:
    opt = trained(bk)
    saved = contents(to_bytes(opt))
    assert set(saved) == CHAINER_KEYS | LOSS_SCALING_KEYS
    assert (int(saved["t"]), int(saved["epoch"]), int(saved["l1/W/t"])) == (2, 1, 2)
    # v after two steps with g1 = G, g2 = 2G, m = 1/2: v = m(-G) - 2G = -2.5 G
    G = (np.arange(6).reshape(2, 3) + 2) / 8
    np.testing.assert_array_equal(saved["l1/W/v"], (-2.5 * G).astype(np.float32))
    assert set(contents(to_bytes(opt.target))) == {"a", "l1/W", "l1/b"}


def test_round_trip_continues_identically(bk: Backend) -> None:
    """Save model and optimizer, load into fresh objects: the next steps are bitwise the same."""
    opt = trained(bk)
    model_file, opt_file = to_bytes(opt.target), to_bytes(opt)
    fresh = cr.CorrectedMomentumSGD(lr=0.25, momentum=0.5).setup(nested_link(bk))
    cr.serializers.load_npz(model_file, fresh.target)
    cr.serializers.load_npz(opt_file, fresh)
    assert (fresh.t, fresh.epoch) == (2, 1)
    for o in (opt, fresh):
        set_grads(bk, o.target, scale=-1.0)
        o.update()
    for (path, p), (_, q) in zip(opt.target.namedparams(), fresh.target.namedparams(), strict=True):
        np.testing.assert_array_equal(bk.to_numpy(p.array), bk.to_numpy(q.array), err_msg=path)
        np.testing.assert_array_equal(
            bk.to_numpy(p.update_rule.state["v"]), bk.to_numpy(q.update_rule.state["v"]), err_msg=path
        )
        assert type(q.array) is type(p.array) and type(q.update_rule.state["v"]) is type(p.array)


def test_snapshot_moves_between_backends(bk: Backend) -> None:
    """Saved on this backend, loaded on NumPy (and back): same values."""
    numpy = load("numpy")
    assert not isinstance(numpy, str)
    opt = trained(bk)
    other = cr.CorrectedMomentumSGD().setup(nested_link(numpy))
    cr.serializers.load_npz(to_bytes(opt), other)
    np.testing.assert_array_equal(
        other.target.l1.W.update_rule.state["v"], bk.to_numpy(opt.target.l1.W.update_rule.state["v"])
    )
    back = cr.CorrectedMomentumSGD().setup(nested_link(bk))
    cr.serializers.load_npz(to_bytes(other), back)
    np.testing.assert_array_equal(
        bk.to_numpy(back.target.l1.W.update_rule.state["v"]), other.target.l1.W.update_rule.state["v"]
    )


def test_missing_state_key_disabled_rule_or_non_strict(bk: Backend) -> None:
    """Chainer's rules: a missing state key raises for an enabled rule (strict); a disabled
    rule, or a non-strict load, leaves a state-less rule to create its state lazily."""
    saved = contents(to_bytes(trained(bk)))
    del saved["l1/W/v"]
    buffer = io.BytesIO()
    np.savez(buffer, **saved)

    opt = cr.CorrectedMomentumSGD().setup(nested_link(bk))
    opt.target.l1.W.update_rule.enabled = False
    buffer.seek(0)
    cr.serializers.load_npz(buffer, opt)
    assert opt.target.l1.W.update_rule.state is None and opt.target.l1.W.update_rule.t == 2
    assert opt.target.a.update_rule.state is not None

    opt = cr.CorrectedMomentumSGD().setup(nested_link(bk))
    buffer.seek(0)
    cr.serializers.load_npz(buffer, opt, strict=False)
    assert opt.target.l1.W.update_rule.state is None
    set_grads(bk, opt.target)
    opt.update()  # the state is created on the first update
    assert opt.target.l1.W.update_rule.state is not None


def test_path_prefix_and_ignore_names(bk: Backend) -> None:
    """A trainer snapshot nests the optimizer under a prefix; ignore_names skips keys."""
    saved = contents(to_bytes(trained(bk)))
    buffer = io.BytesIO()
    np.savez(buffer, **{f"updater/optimizer:main/{k}": v for k, v in saved.items()})
    opt = cr.CorrectedMomentumSGD().setup(nested_link(bk))
    buffer.seek(0)
    # as in Chainer, ignore_names are matched against full keys, prefix included
    cr.serializers.load_npz(
        buffer, opt, path="updater/optimizer:main/", ignore_names=["updater/optimizer:main/epoch"]
    )
    assert (opt.t, opt.epoch) == (2, 0)
    np.testing.assert_array_equal(bk.to_numpy(opt.target.a.update_rule.state["v"]), saved["a/v"])


def test_ignored_key_may_be_missing_from_a_strict_snapshot(bk: Backend) -> None:
    """Chainer checks ignore_names before looking the key up, so a strict load
    of a snapshot that lacks an ignored key succeeds (the value stays)."""
    saved = contents(to_bytes(trained(bk)))
    del saved["epoch"]
    buffer = io.BytesIO()
    np.savez(buffer, **saved)
    buffer.seek(0)
    opt = cr.CorrectedMomentumSGD().setup(nested_link(bk))
    cr.serializers.load_npz(buffer, opt, ignore_names=lambda key: key == "epoch")
    assert (opt.t, opt.epoch) == (2, 0)


def test_fp32_master_state_is_float32_and_master_not_saved(bk: Backend) -> None:
    if not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")
    W = cr.Parameter(bk.asarray([1.0, 2.0], "float16"))
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(W=W))
    opt.use_fp32_update()
    W.grad = bk.asarray([1.0, 1.0], "float16")
    opt.update()
    saved = contents(to_bytes(opt))
    assert set(saved) == {"t", "epoch", "W/t", "W/v"} | LOSS_SCALING_KEYS
    assert saved["W/v"].dtype == np.float32


def test_saving_none_is_refused() -> None:
    with pytest.raises(TypeError, match="None"):
        cr.serializers.DictionarySerializer()("x", None)
