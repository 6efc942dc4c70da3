"""Family 2: Chainer's hook machinery.

Optimizer hooks run before (``pre``) or after (``post``) the parameter
updates, in registration order; ``auto`` takes the hook's ``timing``
attribute, else ``pre``. A hook with ``call_for_each_param`` is called as
``hook(rule, param)`` for each parameter in parameter order. Optimizer pre
hooks see the still-scaled gradients, update-rule hooks the unscaled ones.
After every single hook call, cleared gradients are reallocated as zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conformance.applicability import require
from conformance.backends import Backend

W0 = {"W": np.array([1.0, 2.0]), "b": np.array([0.5]), "c": np.array([-1.0, 0.0, 1.0])}
G = {"W": np.array([0.5, -0.5]), "b": np.array([2.0]), "c": np.array([1.0, 1.0, -1.0])}


class Recorder:
    """Hooks that append what they saw to one shared log."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def optimizer_hook(self, name: str, timing: str | None = None, **attrs: Any) -> Callable[..., None]:
        def hook(opt: Any) -> None:
            grads = {p.name: Backend.to_host(p.grad) if p.grad is not None else None
                     for _, p in opt.target.namedparams()}
            self.log.append((name, grads))
        hook.name = name  # type: ignore[attr-defined]
        if timing is not None:
            hook.timing = timing  # type: ignore[attr-defined]
        for k, v in attrs.items():
            setattr(hook, k, v)
        return hook

    def param_hook(self, name: str, timing: str | None = None) -> Callable[..., None]:
        def hook(rule: Any, param: Any) -> None:
            self.log.append((name, param.name, Backend.to_host(param.grad)))
        hook.name = name  # type: ignore[attr-defined]
        hook.call_for_each_param = True  # type: ignore[attr-defined]
        if timing is not None:
            hook.timing = timing  # type: ignore[attr-defined]
        return hook

    def names(self) -> list[Any]:
        return [entry[0] if len(entry) == 2 else (entry[0], entry[1]) for entry in self.log]


def _run(impl: Any) -> Any:
    require(impl, "hooks")
    return impl.make(W0, lr=0.5, momentum=0.9)


def test_registration_order(impl: Any) -> None:
    """Pre hooks run in registration order, then the updates, then post hooks in order."""
    run, rec = _run(impl), Recorder()
    for name in ["h1", "h2", "h3", "h4"]:
        run.add_hook(rec.optimizer_hook(name), timing="pre")
    for name in ["p1", "p2"]:
        run.add_hook(rec.optimizer_hook(name), timing="post")
    run.step(G)
    assert rec.names() == ["h1", "h2", "h3", "h4", "p1", "p2"]


def test_auto_timing_takes_hook_attribute(impl: Any) -> None:
    """``auto`` files a hook by its ``timing`` attribute, ``pre`` without one."""
    run, rec = _run(impl), Recorder()
    run.add_hook(rec.optimizer_hook("late", timing="post"))
    run.add_hook(rec.optimizer_hook("plain"))
    run.add_hook(rec.optimizer_hook("early", timing="pre"))
    run.step(G)
    assert rec.names() == ["plain", "early", "late"]


def test_pre_sees_old_post_sees_new_parameters(impl: Any) -> None:
    """Pre hooks run before the update and post hooks after it."""
    run = _run(impl)
    seen: list[np.ndarray] = []
    for timing in ("pre", "post"):
        def hook(opt: Any) -> None:
            seen.append(Backend.to_host(next(p for _, p in opt.target.namedparams() if p.name == "W").array))
        run.add_hook(hook, name=timing, timing=timing)
    run.step(G)
    np.testing.assert_array_equal(seen[0], W0["W"])
    np.testing.assert_array_equal(seen[1], W0["W"] - 0.5 * G["W"])


def test_per_parameter_hooks_in_parameter_order(impl: Any) -> None:
    """A ``call_for_each_param`` hook is called once per parameter, in parameter order."""
    run, rec = _run(impl), Recorder()
    run.add_hook(rec.param_hook("each"), timing="pre")
    run.add_hook(rec.optimizer_hook("after"), timing="pre")
    run.step(G)
    assert rec.names() == [("each", "W"), ("each", "b"), ("each", "c"), "after"]


def test_optimizer_hooks_see_scaled_rule_hooks_unscaled_gradients(impl: Any) -> None:
    """With loss scale s, optimizer pre hooks see s*g; update-rule hooks see g, inside the update."""
    require(impl, "static_loss_scaling")
    run, rec = _run(impl), Recorder()
    run.loss_scaling(scale=8.0)
    run.add_hook(rec.optimizer_hook("opt_pre"), timing="pre")
    run.add_hook(rec.optimizer_hook("opt_post"), timing="post")
    run.add_hook(rec.param_hook("rule_pre_b"), name="rule_pre_b", timing="pre", param="b")
    run.add_hook(rec.param_hook("rule_post_b"), name="rule_post_b", timing="post", param="b")
    run.step(G)
    assert [e[0] for e in rec.log] == ["opt_pre", "rule_pre_b", "rule_post_b", "opt_post"]
    np.testing.assert_array_equal(rec.log[0][1]["b"], 8.0 * G["b"])
    np.testing.assert_array_equal(rec.log[1][2], G["b"])


def test_removed_hook_is_not_called(impl: Any) -> None:
    """remove_hook unregisters; an unknown name raises KeyError."""
    run, rec = _run(impl), Recorder()
    run.add_hook(rec.optimizer_hook("a"))
    run.add_hook(rec.optimizer_hook("b"))
    run.remove_hook("a")
    run.step(G)
    assert rec.names() == ["b"]
    with pytest.raises(KeyError):
        run.remove_hook("a")


def test_naming_rules(impl: Any) -> None:
    """Name: the argument, else hook.name, else __name__; a used name raises KeyError."""
    run, rec = _run(impl), Recorder()

    def by_function_name(opt: Any) -> None:
        rec.log.append(("fn", None))

    run.add_hook(by_function_name)
    run.add_hook(rec.optimizer_hook("attr"))
    run.add_hook(rec.optimizer_hook("ignored"), name="explicit")
    with pytest.raises(KeyError):
        run.add_hook(rec.optimizer_hook("x"), name="attr")
    with pytest.raises(KeyError):
        run.add_hook(rec.optimizer_hook("x", timing="post"), name="by_function_name")
    run.remove_hook("by_function_name")
    run.remove_hook("explicit")
    run.remove_hook("attr")


class _Nameless:
    def __call__(self, opt: Any) -> None:
        return None


def test_error_rules(impl: Any) -> None:
    """Not callable: TypeError; bad timing: ValueError; no name at all: ValueError."""
    run = _run(impl)
    with pytest.raises(TypeError):
        run.add_hook(42, name="n")
    with pytest.raises(ValueError):
        run.add_hook(lambda opt: None, name="t", timing="sometimes")
    with pytest.raises(ValueError):
        run.add_hook(_Nameless())


def test_cleared_gradients_reallocated_after_each_hook(impl: Any) -> None:
    """A hook that clears gradients: the next hook already sees zeros, and the step still runs."""
    run, rec = _run(impl), Recorder()

    def clear(opt: Any) -> None:
        opt.target.cleargrads()

    run.add_hook(clear, name="clear", timing="pre")
    run.add_hook(rec.optimizer_hook("after"), timing="pre")
    run.step(G)
    grads = rec.log[0][1]
    for n, a in W0.items():
        assert grads[n] is not None, f"gradient of {n} still None after the hook that cleared it"
        np.testing.assert_array_equal(grads[n], np.zeros_like(a))
    np.testing.assert_array_equal(run.params()["W"], W0["W"])
    assert run.velocity("W") is not None
