"""Family 4: a non-finite gradient under dynamic loss scaling skips the whole step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrmom_conformance.checks._support import gradients, problem, quiet
from corrmom_conformance.protocol import HookEvent, HookSpec
from corrmom_conformance.tolerances import bitwise_equal

pytestmark = pytest.mark.requires("loss_scaling")

NAMES = ("W", "b", "l1/W")
SHAPES = {"W": (2, 3), "b": (3,), "l1/W": (4,)}


def _primed(adapter):
    params = problem(7, SHAPES)
    grads = gradients(7, params, 3)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.loss_scaling(interval=3)
    with quiet():
        for g in grads[:2]:
            opt.step(g)
    return opt, grads[2]


def _poisoned(grads, name, index, value):
    bad = {k: v.copy() for k, v in grads.items()}
    flat = bad[name].reshape(-1)
    flat[index % flat.size] = value
    return bad


@given(
    name=st.sampled_from(NAMES), index=st.integers(0, 11), value=st.sampled_from([np.nan, np.inf, -np.inf])
)
def test_skipped_step_changes_no_parameter_or_state(adapter, name, index, value):
    """NaN, +inf or -inf anywhere in any gradient: every parameter and every state keeps its bits."""
    opt, g = _primed(adapter)
    before_p, before_s = opt.params(), opt.state()
    with quiet():
        opt.step(_poisoned(g, name, index, value))
    after_p, after_s = opt.params(), opt.state()
    for k in before_p:
        assert bitwise_equal(before_p[k], after_p[k]), (
            f"parameter {k!r} changed on a skipped step ({name} poisoned)"
        )
        if before_s.get(k) is not None:
            assert bitwise_equal(before_s[k], after_s[k]), f"state of {k!r} changed on a skipped step"


@pytest.mark.requires("counters")
@pytest.mark.parametrize("name", NAMES)
def test_skipped_step_advances_t_but_no_rule_counter(adapter, name):
    opt, g = _primed(adapter)
    t, rules = opt.t, {k: opt.rule_t(k) for k in SHAPES}
    with quiet():
        opt.step(_poisoned(g, name, 0, np.nan))
    assert opt.t == t + 1, f"optimizer t went {t} -> {opt.t} on a skipped step (expected {t + 1})"
    for k in SHAPES:
        assert opt.rule_t(k) == rules[k], (
            f"rule t of {k!r} went {rules[k]} -> {opt.rule_t(k)} on a skipped step"
        )


def test_step_after_skip_resumes(adapter):
    """The step after a skipped one updates normally, from the state before the skip."""
    opt, g = _primed(adapter)
    with quiet():
        opt.step(_poisoned(g, "b", 1, np.inf))
        before = opt.params()
        opt.step(g)
    after = opt.params()
    assert all(not np.array_equal(before[k], after[k]) for k in before), (
        "the step after a skip did not update"
    )


@pytest.mark.requires("warnings")
@pytest.mark.parametrize("name", NAMES)
def test_warning_names_the_parameter(adapter, name):
    opt, g = _primed(adapter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step(_poisoned(g, name, 0, np.inf))
    messages = [str(w.message) for w in caught]
    assert any(name in m for m in messages), f"no warning names {name!r}: {messages}"


def test_no_skip_without_dynamic_scaling(adapter):
    """Only dynamic loss scaling skips: with none, a NaN gradient reaches the parameters."""
    params = problem(8, {"w": (2,)})
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    with quiet():
        opt.step({"w": np.array([np.nan, 1.0], np.float32)})
    assert np.isnan(opt.params()["w"][0])


# -- hooks on a skipped step; static scaling does not skip ------------------------------


def _hooked(adapter, rule_level: bool):
    opt, g = _primed(adapter)
    events: list[HookEvent] = []
    opt.add_hook(HookSpec(name="opt_pre", timing="pre"), events.append)
    opt.add_hook(HookSpec(name="opt_post", timing="post"), events.append)
    if rule_level:
        opt.add_hook(HookSpec(name="rule_pre", timing="pre", level="rule", param="b"), events.append)
        opt.add_hook(HookSpec(name="rule_post", timing="post", level="rule", param="b"), events.append)
    return opt, g, events


@pytest.mark.requires("hooks")
def test_skipped_step_runs_optimizer_pre_and_post_hooks(adapter):
    """On a skipped step Chainer still calls the optimizer's pre and post hooks (t advanced for the post ones)."""
    opt, g, events = _hooked(adapter, rule_level=False)
    with quiet():
        opt.step(_poisoned(g, "W", 0, np.nan))
    assert [e.hook for e in events] == ["opt_pre", "opt_post"], (
        f"hooks called on a skipped step: {[e.hook for e in events]}"
    )


@pytest.mark.requires("hooks", "rule_hooks")
def test_skipped_step_runs_no_update_rule_hook(adapter):
    """Rule hooks run inside the update, so a skipped step calls none of them; the next clean step does."""
    opt, g, events = _hooked(adapter, rule_level=True)
    with quiet():
        opt.step(_poisoned(g, "l1/W", 2, np.inf))
        skipped = [e.hook for e in events]
        del events[:]
        opt.step(g)
    assert skipped == ["opt_pre", "opt_post"], f"hooks called on a skipped step: {skipped}"
    assert [e.hook for e in events] == ["opt_pre", "rule_pre", "rule_post", "opt_post"], (
        f"hooks called on the clean step after it: {[e.hook for e in events]}"
    )


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_static_scaling_applies_a_non_finite_step(adapter, value):
    """Only dynamic scaling skips: under a static scale a non-finite gradient reaches the parameter and the step counts."""
    params = problem(9, {"w": (2,), "b": (3,)})
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.loss_scaling(scale=4.0)
    g = {"w": np.array([value, 1.0], np.float32), "b": np.ones(3, np.float32)}
    with quiet():
        opt.step(g)
    got = opt.params()
    assert not np.isfinite(got["w"][0]), f"w[0] is {got['w'][0]}: the step was skipped under a static scale"
    assert not np.array_equal(got["b"], params["b"]), (
        "b did not move: the step was skipped under a static scale"
    )
    assert opt.loss_scale == 4.0, f"the static scale moved to {opt.loss_scale}"
    if "counters" in adapter.capabilities:
        assert (opt.t, opt.rule_t("b")) == (1, 1), (
            f"t, rule t of b = {(opt.t, opt.rule_t('b'))}, expected (1, 1)"
        )
