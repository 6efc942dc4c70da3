"""One test per Chainer quirk the reference decided on (see the semantics notes).

Each docstring says what Chainer 7.8.1 does and what corrmom_ref does.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from backends import Backend
from helpers import assert_same_snapshot, deep_snapshot

import corrmom_ref as cr


def one_param(bk: Backend, value: list[float], dtype: str = "float32", **kw: float) -> tuple:
    W = cr.Parameter(bk.asarray(value, dtype))
    opt = cr.CorrectedMomentumSGD(**kw).setup(cr.Link(W=W))
    return W, opt


def test_is_safe_to_update_before_first_update(bk: Backend) -> None:
    """Chainer raises AttributeError before the first update; fixed: True."""
    _, opt = one_param(bk, [1.0])
    assert opt.is_safe_to_update() is True


def test_loss_scaling_state_is_saved_under_extra_keys(bk: Backend) -> None:
    """Chainer saves no loss-scaling state; corrmom_ref adds 'loss_scaling.*' keys.

    After 3 clean steps and 1 overflow with interval 2 the scale is 2**3 / 2
    = 4 and an overflow has been seen; a fresh optimizer that loads the
    snapshot continues with that state (x 2**(1/2) next, not x 2).
    """
    W, opt = one_param(bk, [1.0], lr=0.5)
    opt.loss_scaling(interval=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in (1.0, 1.0, 1.0, np.inf):
            W.grad = bk.asarray([g], "float32")
            opt.update()
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, opt)
    buffer.seek(0)
    with np.load(buffer) as npz:
        saved = {k: npz[k] for k in npz.files}
    assert set(saved) == {
        "t",
        "epoch",
        "W/t",
        "W/v",
        "loss_scaling.dynamic",
        "loss_scaling.interval",
        "loss_scaling.nonfinite_ever",
        "loss_scaling.scale",
    }
    assert saved["loss_scaling.scale"] == 4.0 and bool(saved["loss_scaling.nonfinite_ever"])
    assert int(saved["loss_scaling.interval"]) == 2 and bool(saved["loss_scaling.dynamic"])
    W2, opt2 = one_param(bk, [1.0], lr=0.5)
    buffer.seek(0)
    cr.serializers.load_npz(buffer, opt2)
    W2.grad = bk.asarray([1.0], "float32")
    opt2.update()
    assert opt2.loss_scale == pytest.approx(4.0 * 2**0.5, rel=1e-15)


def test_chainer_snapshot_keeps_current_loss_scaling(bk: Backend) -> None:
    """A snapshot without 'loss_scaling.*' keys (Chainer's) leaves the configuration alone."""
    W, opt = one_param(bk, [1.0])
    opt.set_loss_scale(16.0)
    buffer = io.BytesIO()
    np.savez(buffer, t=np.int64(3), epoch=np.int64(1), **{"W/t": np.int64(3), "W/v": np.zeros(1, np.float32)})
    buffer.seek(0)
    cr.serializers.load_npz(buffer, opt)
    assert (opt.t, opt.epoch, W.update_rule.t, opt.loss_scale) == (3, 1, 3, 16.0)


def test_pickles_are_refused(bk: Backend) -> None:
    """Chainer loads with allow_pickle=True (a crafted file can run code); corrmom_ref refuses."""
    _, opt = one_param(bk, [1.0])
    buffer = io.BytesIO()
    np.savez(buffer, t=np.array([object()], dtype=object), epoch=np.int64(0))
    buffer.seek(0)
    before = deep_snapshot(bk, opt)
    with pytest.raises(ValueError, match=r"'t'.*pickle"):
        cr.serializers.load_npz(buffer, opt)
    assert_same_snapshot(before, deep_snapshot(bk, opt))


def test_use_fp32_update_false_turns_it_off(bk: Backend) -> None:
    """Chainer's use_fp32_update(False) turns it ON for current rules; fixed: off.

    Observable: updates below float16 resolution are lost without a master copy.
    """
    if not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")
    W, opt = one_param(bk, [1.0], "float16", lr=2.0**-12, momentum=0.0)
    opt.use_fp32_update(True)
    opt.use_fp32_update(False)
    for _ in range(8):
        W.grad = bk.asarray([1.0], "float16")
        opt.update()
    assert float(bk.to_numpy(W.array)[0]) == 1.0  # with a master it would be 1 - 2**-9


def test_dynamic_to_static_keeps_dynamic_flag_and_warns(bk: Backend) -> None:
    """Chainer silently keeps the dynamic policy after set_loss_scale; kept, with a warning."""
    W, opt = one_param(bk, [1.0])
    opt.loss_scaling()
    with pytest.warns(UserWarning, match="dynamic"):
        opt.set_loss_scale(16.0)
    W.grad = bk.asarray([1.0], "float32")
    opt.update()
    assert opt.loss_scale == 32.0  # doubled: still dynamic


def test_static_scale_without_dynamic_does_not_warn(bk: Backend) -> None:
    _, opt = one_param(bk, [1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.set_loss_scale(16.0)


class BadTiming:
    timing = "sometime"

    def __init__(self, log: list, tag: str) -> None:
        self.log, self.tag = log, tag

    def __call__(self, *args: object) -> None:
        self.log.append(self.tag)


def test_rule_level_invalid_auto_timing_is_post_and_warns(bk: Backend) -> None:
    """Chainer files a rule hook with an invalid timing attribute as 'post', silently;
    corrmom_ref files it as 'post' too, with a warning."""
    W, opt = one_param(bk, [1.0])
    log: list[str] = []
    with pytest.warns(UserWarning, match="'post'"):
        W.update_rule.add_hook(BadTiming(log, "bad"), name="bad")
    W.update_rule.add_hook(lambda rule, param: log.append("post"), name="post", timing="post")
    W.update_rule.add_hook(lambda rule, param: log.append("pre"), name="pre", timing="pre")
    W.grad = bk.asarray([1.0], "float32")
    opt.update()
    assert log == ["pre", "bad", "post"]


def test_optimizer_level_invalid_auto_timing_is_pre_and_warns(bk: Backend) -> None:
    """Chainer's optimizer warns and files it as 'pre' (same here)."""
    W, opt = one_param(bk, [1.0])
    log: list[str] = []
    opt.add_hook(lambda o: log.append("post"), name="post", timing="post")
    with pytest.warns(UserWarning, match="'pre'"):
        opt.add_hook(BadTiming(log, "bad"), name="bad")
    W.grad = bk.asarray([1.0], "float32")
    opt.update()
    assert log == ["bad", "post"]


@pytest.mark.parametrize("scale", [None, 4.0])
def test_weight_decay_multiplies_rate_by_loss_scale_lasso_does_not(bk: Backend, scale: float | None) -> None:
    """Chainer's WeightDecay adds s*rate*p to the scaled gradient (net: rate*p);
    its Lasso adds rate*sign(p) unscaled (net: rate*sign(p)/s). Both kept.

    With lr = 1, m = 0, p = 2, g = 1/2, rate = 1/4 (exact in binary):
    WeightDecay: p - (g + rate p) = 1; Lasso: p - (g + rate/s).
    """
    s = 1.0 if scale is None else scale
    for hook, expected in (
        (cr.optimizer_hooks.WeightDecay(0.25), 2.0 - (0.5 + 0.25 * 2.0)),
        (cr.optimizer_hooks.Lasso(0.25), 2.0 - (0.5 + 0.25 / s)),
    ):
        W, opt = one_param(bk, [2.0], lr=1.0, momentum=0.0)
        if scale is not None:
            opt.set_loss_scale(scale)
        opt.add_hook(hook)
        opt.update(lambda W=W: cr.ScriptedLoss({W: bk.asarray([0.5], "float32")}))
        assert float(bk.to_numpy(W.array)[0]) == expected, type(hook).__name__


def test_dynamic_nan_check_skips_uninitialized_parameters(bk: Backend) -> None:
    """Chainer's non-finite check raises TypeError on a parameter whose array is None; fixed: skipped.

    The initialised parameter's overflow is still found: the step is skipped
    and the scale halves from 1 to its floor 1; a finite step then doubles it
    (interval 1).
    """
    W, opt = one_param(bk, [1.0], lr=0.5)
    opt.target.add("lazy", cr.Parameter())
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(opt.target)
    opt.loss_scaling(interval=1)  # after an overflow the scale grows by 2 ** (1 / interval) per clean step
    W.grad = bk.asarray([np.inf])
    with pytest.warns(cr.loss_scaling.NonFiniteGradientWarning):
        opt.update()
    assert not opt.is_safe_to_update() and opt.loss_scale == 1.0
    W.grad = bk.asarray([2.0])
    opt.update()
    assert opt.is_safe_to_update() and opt.loss_scale == 2.0
    np.testing.assert_array_equal(bk.to_numpy(W.array), [0.0])  # 1 + 0.5 * (0 - 2)
    assert opt.target.lazy.array is None and opt.target.lazy.update_rule.t == 1
