"""The order of operations inside ``update()`` (Chainer 7.8.1's, see the semantics notes)."""

from __future__ import annotations

import numpy as np
from backends import Backend

import corrmom_ref as cr


class Recorder:
    """Hooks and a loss that append what they see to one shared log."""

    def __init__(self, bk: Backend, opt: cr.GradientMethod) -> None:
        self.bk, self.opt, self.log = bk, opt, []

    def grad_of(self, param: cr.Parameter) -> list[float] | None:
        return None if param.grad is None else self.bk.to_numpy(param.grad).ravel().tolist()

    def optimizer_hook(self, tag: str, timing: str):
        def hook(opt: cr.GradientMethod) -> None:
            self.log.append((tag, opt.t, opt.loss_scale, self.grad_of(opt.target.l1.W)))

        hook.timing = timing
        return hook

    def per_param_hook(self, tag: str):
        rec = self

        class Hook:
            call_for_each_param = True
            timing = "pre"

            def __call__(self, rule: cr.UpdateRule, param: cr.Parameter) -> None:
                rec.log.append((tag, param.name, rule.t))

        return Hook()

    def rule_hook(self, tag: str):
        def hook(rule: cr.UpdateRule, param: cr.Parameter) -> None:
            self.log.append((tag, param.name, rule.t, self.grad_of(param)))

        return hook


def test_update_runs_in_chainers_order(bk: Backend) -> None:
    """lossfun, clear, backward(scale), reallocate, pre hooks, t += 1, rules, post hooks, scale."""
    a = cr.Parameter(bk.asarray([1.0], "float32"))
    W = cr.Parameter(bk.asarray([1.0, 2.0], "float32"))
    model = cr.Link(a=a, l1=cr.Link(W=W))
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(model)
    opt.loss_scaling(interval=3)  # dynamic: 1.0 now, 2.0 after a clean step
    rec = Recorder(bk, opt)
    opt.add_hook(rec.optimizer_hook("opt-pre-1", "pre"), name="p1")
    opt.add_hook(rec.per_param_hook("each-pre"), name="each")
    opt.add_hook(rec.optimizer_hook("opt-pre-2", "pre"), name="p2")
    opt.add_hook(rec.optimizer_hook("opt-post", "post"), name="post")
    W.update_rule.add_hook(rec.rule_hook("rule-pre"), name="rp", timing="pre")
    W.update_rule.add_hook(rec.rule_hook("rule-post"), name="rq", timing="post")
    a.grad = bk.asarray([7.0], "float32")  # stale: update(lossfun) must clear it

    class Loss:
        def backward(self, loss_scale=None):
            rec.log.append(("backward", loss_scale, rec.grad_of(a), rec.grad_of(W)))
            W.grad = bk.asarray([4.0 * loss_scale, 8.0 * loss_scale], "float32")
            W.loss_scale = loss_scale

    def lossfun(x):
        rec.log.append(("lossfun", x, rec.grad_of(a)))
        return Loss()

    opt.update(lossfun, "arg")
    opt.update(lossfun, "arg")
    second = [
        ("lossfun", "arg", [0.0]),
        ("backward", 2.0, None, None),  # cleared after lossfun, before backward
        ("opt-pre-1", 1, 2.0, [8.0, 16.0]),  # pre hooks: t not advanced, gradient still scaled
        ("each-pre", "a", 1),  # per-parameter hooks in params() order: /a, /l1/W
        ("each-pre", "W", 1),
        ("opt-pre-2", 1, 2.0, [8.0, 16.0]),
        ("rule-pre", "W", 2, [4.0, 8.0]),  # rule hooks: rule t advanced, gradient unscaled
        ("rule-post", "W", 2, [4.0, 8.0]),
        ("opt-post", 2, 2.0, [4.0, 8.0]),  # post hooks: t advanced, scale not yet moved
    ]
    assert rec.log[len(rec.log) - len(second) :] == second
    assert rec.log[1] == ("backward", 1.0, None, None)
    assert opt.loss_scale == 4.0  # moved after the post hooks
    # /a never had a gradient from the loss: it was reallocated as zeros and still moved
    assert bk.to_numpy(a.grad).tolist() == [0.0]


def test_hook_removed_is_not_called(bk: Backend) -> None:
    W = cr.Parameter(bk.asarray([1.0], "float32"))
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(W=W))
    calls = []
    opt.add_hook(lambda o: calls.append("x"), name="x")
    opt.remove_hook("x")
    W.grad = bk.asarray([1.0], "float32")
    opt.update()
    assert calls == []


def test_hook_that_clears_grads_gets_them_reallocated(bk: Backend) -> None:
    """After every optimizer hook, cleared gradients are reallocated as zeros."""
    W = cr.Parameter(bk.asarray([1.0], "float32"))
    opt = cr.CorrectedMomentumSGD(lr=1.0, momentum=0.0).setup(cr.Link(W=W))
    seen = []
    opt.add_hook(lambda o: o.target.cleargrads(), name="clear")
    opt.add_hook(lambda o: seen.append(bk.to_numpy(o.target.W.grad).tolist()), name="look")
    W.grad = bk.asarray([1.0], "float32")
    opt.update()
    assert seen == [[0.0]]
    np.testing.assert_array_equal(bk.to_numpy(W.array), [1.0])
