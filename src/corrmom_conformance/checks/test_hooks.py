"""Family 2: hook timing, order, naming rules, what gradients each hook sees, reallocation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from corrmom_conformance.checks._support import assert_trajectory, gradients, oracle_eq9, problem, quiet, run
from corrmom_conformance.protocol import HookEvent, HookSpec

pytestmark = pytest.mark.requires("hooks")

SHAPES = {"b": (2,), "W": (2, 2), "l1/W": (3,)}
#: Chainer's parameter order: own parameters sorted by name, then child links sorted by name.
PARAM_ORDER = ["W", "b", "l1/W"]


def _opt(adapter, **kw):
    params = problem(21, SHAPES)
    return adapter.create(params, lr=kw.get("lr", 0.1), momentum=0.9), gradients(21, params, 3)


def _recorder() -> tuple[list[HookEvent], Callable[[HookEvent], None]]:
    events: list[HookEvent] = []
    return events, events.append


def test_pre_and_post_in_registration_order(adapter):
    """Pre hooks run before the update (t not yet advanced), post hooks after, each in registration order."""
    opt, grads = _opt(adapter)
    events, record = _recorder()
    for name, timing in [("p1", "pre"), ("q1", "post"), ("p2", "pre"), ("q2", "post"), ("p3", "pre")]:
        opt.add_hook(HookSpec(name=name, timing=timing), record)
    with quiet():
        opt.step(grads[0])
    assert [(e.hook, e.t) for e in events] == [("p1", 0), ("p2", 0), ("p3", 0), ("q1", 1), ("q2", 1)]


def test_auto_timing_follows_the_hook_attribute(adapter):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="late", timing="auto", attr_timing="post"), record)
    opt.add_hook(HookSpec(name="early", timing="auto", attr_timing="pre"), record)
    opt.add_hook(HookSpec(name="default", timing="auto"), record)
    with quiet():
        opt.step(grads[0])
    assert [e.hook for e in events] == ["early", "default", "late"]


def test_invalid_auto_timing_warns_and_runs_pre(adapter):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    with pytest.warns(UserWarning):
        opt.add_hook(HookSpec(name="odd", timing="auto", attr_timing="sometime"), record)
    opt.add_hook(HookSpec(name="post", timing="post"), record)
    with quiet():
        opt.step(grads[0])
    assert [(e.hook, e.t) for e in events] == [("odd", 0), ("post", 1)]


def test_per_parameter_hook_called_once_per_parameter_in_order(adapter):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="each", timing="pre", per_param=True), record)
    with quiet():
        opt.step(grads[0])
        opt.step(grads[1])
    assert [e.param for e in events] == PARAM_ORDER * 2


def test_whole_optimizer_hook_called_once(adapter):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="once", timing="pre"), record)
    with quiet():
        opt.step(grads[0])
    assert len(events) == 1 and events[0].param is None


def test_removed_hook_is_not_called(adapter):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="gone", timing="pre"), record)
    opt.add_hook(HookSpec(name="kept", timing="post"), record)
    opt.remove_hook("gone")
    with quiet():
        opt.step(grads[0])
    assert [e.hook for e in events] == ["kept"]


def test_naming_and_error_rules(adapter):
    """Name from the argument, else the hook's name attribute; duplicates (pre or post) are KeyError; no name is ValueError."""
    opt, _ = _opt(adapter)
    _events, record = _recorder()
    opt.add_hook(HookSpec(name=None, attr_name="named_by_attr", timing="pre"), record)
    with pytest.raises(KeyError):
        opt.add_hook(HookSpec(name="named_by_attr", timing="post"), record)
    with pytest.raises(ValueError):
        opt.add_hook(HookSpec(name=None, attr_name=None, timing="pre"), record)
    with pytest.raises(ValueError):
        opt.add_hook(HookSpec(name="bad_timing", timing="whenever"), record)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        opt.remove_hook("never_registered")
    opt.remove_hook("named_by_attr")


@pytest.mark.requires("loss_scaling", "rule_hooks")
def test_optimizer_hooks_see_scaled_and_rule_hooks_unscaled_gradients(adapter):
    """With loss scale s, optimizer pre hooks see s*g; update-rule hooks see g (unscaled before them)."""
    opt, grads = _opt(adapter)
    opt.loss_scaling(scale=8.0)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="opt_pre", timing="pre", per_param=True), record)
    opt.add_hook(HookSpec(name="rule_pre", timing="pre", level="rule", param="b"), record)
    with quiet():
        opt.step(grads[0])
    seen = {(e.hook, e.param): e.grads[e.param] for e in events}
    np.testing.assert_allclose(seen[("opt_pre", "b")], 8.0 * grads[0]["b"], rtol=1e-6)
    np.testing.assert_allclose(seen[("rule_pre", "b")], grads[0]["b"], rtol=1e-6)


@pytest.mark.requires("rule_hooks")
def test_rule_hooks_run_inside_the_update(adapter):
    """Order: optimizer pre, then per parameter its rule's pre and post hooks, then optimizer post."""
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="opt_post", timing="post"), record)
    opt.add_hook(HookSpec(name="opt_pre", timing="pre"), record)
    for name in ("W", "l1/W"):
        opt.add_hook(HookSpec(name=f"{name}_post", timing="post", level="rule", param=name), record)
        opt.add_hook(HookSpec(name=f"{name}_pre", timing="pre", level="rule", param=name), record)
    with quiet():
        opt.step(grads[0])
    assert [e.hook for e in events] == ["opt_pre", "W_pre", "W_post", "l1/W_pre", "l1/W_post", "opt_post"]


def test_gradients_reallocated_after_each_hook(adapter):
    """A hook that clears a gradient leaves zeros, not None, for the next hook."""
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="clearer", timing="pre", clears_grad="b"), record)
    opt.add_hook(HookSpec(name="observer", timing="pre"), record)
    with quiet():
        opt.step(grads[0])
    observed = events[1].grads["b"]
    assert observed is not None, "the gradient the first hook cleared was not reallocated"
    assert np.array_equal(observed, np.zeros_like(observed))


def test_hooks_see_the_step_gradients(adapter):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="all", timing="pre"), record)
    with quiet():
        opt.step(grads[0])
    for name in SHAPES:
        np.testing.assert_array_equal(events[0].grads[name], grads[0][name])


# -- hooks that modify gradients, removal of post hooks, cleared gradients ----------------


def _eq9_with(params, grads, lr, m, transform):
    """Eq. (9) in float64 with every gradient first passed through ``transform(name, g)``."""
    hooked = [{k: transform(k, g[k].astype(np.float64)) for k in g} for g in grads]
    return oracle_eq9(params, hooked, [lr] * len(grads), [m] * len(grads))


def test_update_uses_the_gradients_pre_hooks_leave(adapter):
    """Pre hooks scale every gradient by 2, add 0.25 to each, then clear ``b``'s: the update uses 2 g + 0.25, and zeros for ``b``."""
    params = problem(22, SHAPES)
    grads = gradients(22, params, 3)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    _events, record = _recorder()
    opt.add_hook(HookSpec(name="double", timing="pre", scale=2.0), record)
    opt.add_hook(HookSpec(name="shift", timing="pre", per_param=True, add=0.25), record)
    opt.add_hook(HookSpec(name="drop_b", timing="pre", clears_grad="b"), record)
    got = run(opt, grads)
    want = _eq9_with(params, grads, 0.1, 0.9, lambda k, g: g * 0 if k == "b" else 2 * g + 0.25)
    assert_trajectory(got, want, np.float32, what="parameter after gradient-modifying pre hooks,")


@pytest.mark.parametrize("timing", ["pre", "post"])
def test_removed_hook_of_either_timing_is_not_called(adapter, timing):
    """A removed pre or post hook is never called again; the other hooks still are."""
    opt, grads = _opt(adapter)
    events, record = _recorder()
    other = "post" if timing == "pre" else "pre"
    opt.add_hook(HookSpec(name="gone", timing=timing), record)
    opt.add_hook(HookSpec(name="kept", timing=other), record)
    with quiet():
        opt.step(grads[0])
    opt.remove_hook("gone")
    with quiet():
        opt.step(grads[1])
    assert [e.hook for e in events][-1:] == ["kept"] and [e.hook for e in events].count("gone") == 1, (
        f"after removing the {timing} hook 'gone' the calls were {[e.hook for e in events]}"
    )


@pytest.mark.requires("rule_hooks")
@pytest.mark.parametrize("timing", ["pre", "post"])
def test_removed_rule_hook_is_not_called(adapter, timing):
    opt, grads = _opt(adapter)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="gone", timing=timing, level="rule", param="b"), record)
    opt.add_hook(HookSpec(name="kept", timing=timing, level="rule", param="W"), record)
    opt.remove_hook("gone", level="rule", param="b")
    with quiet():
        opt.step(grads[0])
    assert [e.hook for e in events] == ["kept"], f"calls after removing the rule {timing} hook: {events}"


@pytest.mark.requires("rule_hooks")
def test_rule_pre_hook_changes_its_parameters_update(adapter):
    """A rule pre hook on ``b`` that scales its (unscaled) gradient by 3 changes ``b``'s update alone."""
    params = problem(24, SHAPES)
    grads = gradients(24, params, 3)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    _events, record = _recorder()
    opt.add_hook(HookSpec(name="triple_b", timing="pre", level="rule", param="b", scale=3.0), record)
    got = run(opt, grads)
    want = _eq9_with(params, grads, 0.1, 0.9, lambda k, g: 3 * g if k == "b" else g)
    assert_trajectory(got, want, np.float32, what="parameter after a rule pre hook,")


@pytest.mark.requires("cleared_grads")
def test_first_pre_hook_sees_zeros_for_a_cleared_gradient(adapter):
    """Cleared gradients are reallocated as zeros before the first pre hook, which may then modify them."""
    params = problem(25, SHAPES)
    grads = gradients(25, params, 2)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    events, record = _recorder()
    opt.add_hook(HookSpec(name="first", timing="pre", per_param=True, add=0.5), record)
    cleared = [grads[0], {**grads[1], "b": None}]
    got = run(opt, cleared)
    seen_b = [e.grads["b"] for e in events if e.param == "b"]
    assert seen_b[1] is not None, "the first pre hook saw None for the cleared gradient of 'b'"
    assert np.array_equal(seen_b[1], np.zeros_like(seen_b[1])), f"it saw {seen_b[1]}, not zeros"
    filled = [grads[0], {**grads[1], "b": np.zeros_like(grads[1]["b"])}]
    want = _eq9_with(params, filled, 0.1, 0.9, lambda k, g: g + 0.5)
    assert_trajectory(got, want, np.float32, what="parameter with a cleared gradient and a pre hook,")
