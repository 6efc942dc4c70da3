"""Hook registration rules, the built-in hooks' formulas, and hooks that raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from backends import Backend
from helpers import nested_link, set_grads

import corrmom_ref as cr
from corrmom_ref.hyperparameter import read_entry

H = cr.optimizer_hooks


def setup(bk: Backend, **kw: float) -> cr.GradientMethod:
    return cr.CorrectedMomentumSGD(**kw).setup(nested_link(bk))


def named(fn, name):
    fn.__name__ = name
    return fn


# -- registration -----------------------------------------------------------------


def test_add_hook_before_setup() -> None:
    with pytest.raises(RuntimeError, match="setup"):
        cr.CorrectedMomentumSGD().add_hook(lambda o: None, name="h")


def test_registration_errors(bk: Backend) -> None:
    opt = setup(bk)
    with pytest.raises(TypeError, match="callable"):
        opt.add_hook(3, name="x")
    with pytest.raises(ValueError, match="timing"):
        opt.add_hook(lambda o: None, name="x", timing="later")
    with pytest.raises(ValueError, match="name"):
        opt.add_hook(type("Anon", (), {"__call__": lambda self, o: None})())
    opt.add_hook(named(lambda o: None, "h"))  # name from __name__
    with pytest.raises(KeyError, match="'h'"):
        opt.add_hook(lambda o: None, name="h", timing="post")  # taken, whatever the timing
    with pytest.raises(KeyError, match="nope"):
        opt.remove_hook("nope")
    with pytest.raises(ValueError, match="timing"):
        opt.call_hooks("middle")
    rule = opt.target.a.update_rule
    with pytest.raises(TypeError, match="callable"):
        rule.add_hook(None, name="x")
    rule.add_hook(lambda r, p: None, name="r")
    with pytest.raises(KeyError, match="'r'"):
        rule.add_hook(lambda r, p: None, name="r")
    with pytest.raises(KeyError):
        rule.remove_hook("nope")


def test_setup_resets_counters_hooks_and_rules(bk: Backend) -> None:
    opt = setup(bk)
    set_grads(bk, opt.target)
    calls = []
    opt.add_hook(lambda o: calls.append(1), name="h")
    opt.update()
    opt.new_epoch()
    old_rule = opt.target.a.update_rule
    assert (opt.t, opt.epoch, len(calls)) == (1, 1, 1)
    assert opt.setup(opt.target) is opt
    assert (opt.t, opt.epoch) == (0, 0)
    assert opt.target.a.update_rule is not old_rule and opt.target.a.update_rule.state is None
    set_grads(bk, opt.target)
    opt.update()
    assert len(calls) == 1  # hook gone


def test_new_epoch_auto_rules() -> None:
    opt = cr.CorrectedMomentumSGD()
    with pytest.raises(RuntimeError):
        opt.new_epoch(auto=True)
    opt.new_epoch()
    opt.use_auto_new_epoch = True
    with pytest.raises(RuntimeError):
        opt.new_epoch()
    opt.new_epoch(auto=True)
    assert opt.epoch == 2


def test_class_defaults_and_hyperparameters() -> None:
    assert (cr.Optimizer.t, cr.Optimizer.epoch, cr.Optimizer.target, cr.Optimizer.use_auto_new_epoch) == (
        0,
        0,
        None,
        False,
    )
    opt = cr.CorrectedMomentumSGD()
    assert (opt.lr, opt.momentum) == (0.01, 0.9)
    assert repr(opt.hyperparam) == "Hyperparameter(lr=0.01, momentum=0.9)"
    opt.lr = 0.5
    assert opt.hyperparam.lr == 0.5


def test_use_cleargrads_false_zeroes_instead(bk: Backend) -> None:
    """Deprecated, warns; with it off, update(lossfun) zeroes gradients instead of clearing."""
    opt = setup(bk)
    with pytest.warns(DeprecationWarning):
        opt.use_cleargrads(False)
    seen = []

    class Loss:
        def backward(self, loss_scale=None):
            seen.append([p.grad is None for p in opt.target.params()])

    opt.update(Loss)
    assert seen == [[False, False, False]]


# -- hooks that raise ----------------------------------------------------------------


class BoomError(Exception):
    pass


def boom(*args: object) -> None:
    raise BoomError("from the hook")


def test_pre_hook_raising_propagates_before_t_advances(bk: Backend) -> None:
    opt = setup(bk)
    set_grads(bk, opt.target)
    before = bk.to_numpy(opt.target.a.array)
    opt.add_hook(boom, name="boom", timing="pre")
    with pytest.raises(BoomError):
        opt.update()
    assert opt.t == 0
    np.testing.assert_array_equal(bk.to_numpy(opt.target.a.array), before)


def test_post_hook_raising_propagates_after_the_update(bk: Backend) -> None:
    opt = setup(bk, lr=0.5)
    set_grads(bk, opt.target)
    opt.add_hook(boom, name="boom", timing="post")
    with pytest.raises(BoomError):
        opt.update()
    assert opt.t == 1 and opt.target.a.update_rule.t == 1


def test_rule_hook_raising_propagates(bk: Backend) -> None:
    opt = setup(bk)
    set_grads(bk, opt.target)
    opt.target.l1.W.update_rule.add_hook(boom, name="boom")
    with pytest.raises(BoomError):
        opt.update()


# -- built-in hooks, against their formulas ------------------------------------------------


def one(bk: Backend, p: list[float], g: list[float], hook: object, lr: float = 1.0) -> np.ndarray:
    """Apply one step of plain SGD (m = 0) with ``hook``; return the new parameter."""
    W = cr.Parameter(bk.asarray(p, "float64"))
    opt = cr.CorrectedMomentumSGD(lr=lr, momentum=0.0).setup(cr.Link(W=W))
    opt.add_hook(hook)
    W.grad = bk.asarray(g, "float64")
    opt.update()
    return bk.to_numpy(W.array)


def test_gradient_clipping_global_norm(bk: Backend) -> None:
    """Two parameters with gradients (3, 4) and (12,): global norm 13, threshold 6.5 halves them."""
    a = cr.Parameter(bk.asarray([0.0, 0.0], "float64"))
    b = cr.Parameter(bk.asarray([0.0], "float64"))
    opt = cr.CorrectedMomentumSGD(lr=1.0, momentum=0.0).setup(cr.Link(a=a, b=b))
    opt.add_hook(H.GradientClipping(6.5))
    a.grad = bk.asarray([3.0, 4.0], "float64")
    b.grad = bk.asarray([12.0], "float64")
    opt.update()
    np.testing.assert_allclose(bk.to_numpy(a.array), [-1.5, -2.0], rtol=1e-15)
    np.testing.assert_allclose(bk.to_numpy(b.array), [-6.0], rtol=1e-15)
    # below the threshold nothing changes
    np.testing.assert_array_equal(one(bk, [0.0, 0.0], [3.0, 4.0], H.GradientClipping(5.0)), [-3.0, -4.0])


def test_gradient_hard_clipping(bk: Backend) -> None:
    np.testing.assert_array_equal(
        one(bk, [0.0, 0.0, 0.0], [-3.0, 0.25, 3.0], H.GradientHardClipping(-1.0, 0.5)), [1.0, -0.25, -0.5]
    )


def test_gradient_lars(bk: Backend) -> None:
    """p = (3, 4), |p| = 5; g = (0, 1), |g| = 1; wd = 0.5, eps = 0:
    rate = 5 / (1 + 2.5); g' = rate * (g + wd p)."""
    rate = 5 / (1 + 0.5 * 5)
    expected = np.array([3.0, 4.0]) - rate * (np.array([0.0, 1.0]) + 0.5 * np.array([3.0, 4.0]))
    got = one(bk, [3.0, 4.0], [0.0, 1.0], H.GradientLARS(threshold=0.01, weight_decay=0.5, eps=0.0))
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    # a parameter norm below the threshold: rate 1
    got = one(bk, [0.003, 0.004], [0.0, 1.0], H.GradientLARS(threshold=0.01, weight_decay=0.5, eps=0.0))
    np.testing.assert_allclose(got, [0.003 - 0.0015, 0.004 - 1.002], rtol=1e-14)


def test_gradient_noise_with_custom_function(bk: Backend) -> None:
    """noise_func(xp, shape, dtype, hook, rule) is added to the gradient (rule t: before the update)."""
    seen = []

    def noise(xp, shape, dtype, hook, rule):
        seen.append((shape, rule.t, hook.eta))
        return xp.full(shape, 0.5, dtype=dtype)

    np.testing.assert_array_equal(
        one(bk, [0.0, 0.0], [1.0, 2.0], H.GradientNoise(0.3, noise_func=noise)), [-1.5, -2.5]
    )
    assert seen == [((2,), 0, 0.3)]


def test_gradient_noise_default_is_seeded_gaussian(bk: Backend) -> None:
    """Default noise: std sqrt(eta / (1 + t)**0.55), t = 0 on the first step: std = sqrt(eta)."""
    n = 2000
    got = one(bk, [0.0] * n, [0.0] * n, H.GradientNoise(0.25, seed=0))
    again = one(bk, [0.0] * n, [0.0] * n, H.GradientNoise(0.25, seed=0))
    np.testing.assert_array_equal(got, again)  # seeded
    std = float(np.std(got))
    assert abs(std - math.sqrt(0.25)) < 5 * 0.5 / math.sqrt(2 * n)  # 5 standard errors


def test_read_entry_is_getattr_with_the_parent_chain() -> None:
    """The hot path's reader agrees with attribute access: own entry, parent's, grandparent's, missing."""
    root = cr.Hyperparameter()
    root.lr = 0.5
    middle = cr.Hyperparameter(root)
    middle.momentum = 0.25
    leaf = cr.Hyperparameter(middle)
    leaf.lr = 0.125
    for name in ("lr", "momentum"):
        assert read_entry(leaf, name) == getattr(leaf, name)
    assert (read_entry(leaf, "lr"), read_entry(leaf, "momentum"), read_entry(middle, "lr")) == (
        0.125,
        0.25,
        0.5,
    )
    with pytest.raises(AttributeError, match="'rho' is not set"):
        read_entry(leaf, "rho")

    class Scheduled(cr.Hyperparameter):
        @property
        def lr(self) -> float:
            return 0.75

    assert read_entry(cr.Hyperparameter(Scheduled()), "lr") == 0.75
