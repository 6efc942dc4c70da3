"""Family 8: Chainer's machinery around the update: disabled update rules and the built-in hooks.

Each built-in hook's trajectory is compared, step by step, with eq. (9) fed
the gradients the suite's model of the hook produces
(:func:`corrmom_conformance.oracle.builtin_hook`), computed in float64 from the
implementation's previous parameters' model values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from corrmom_conformance import oracle
from corrmom_conformance.checks._support import assert_trajectory, gradients, oracle_eq9, problem, quiet, run
from corrmom_conformance.report import NA_PREFIX
from corrmom_conformance.tolerances import bitwise_equal

SHAPES = {"W": (2, 3), "b": (3,), "l1/W": (4,)}


def _noise(shape: tuple[int, ...], rule_t: int) -> np.ndarray:
    """Deterministic "noise": it depends on the rule's t, so calling it with another counter shows."""
    return np.linspace(-1.0, 1.0, int(np.prod(shape, dtype=int))).reshape(shape) * 0.5 * (rule_t + 1)


#: (kind, keyword arguments) of each built-in hook; chosen so that every hook changes the gradients.
HOOKS: list[tuple[str, dict[str, Any]]] = [
    ("WeightDecay", {"rate": 0.25}),
    ("Lasso", {"rate": 0.125}),
    ("GradientClipping", {"threshold": 1.0}),
    ("GradientHardClipping", {"lower_bound": -0.5, "upper_bound": 0.25}),
    ("GradientLARS", {"threshold": 0.01, "weight_decay": 0.1, "eps": 1e-9}),
    ("GradientNoise", {"eta": 0.01, "noise": _noise}),
]


def _require_hook(adapter, kind: str) -> None:
    """Skip as not applicable when the adapter ships only some built-in hooks and not ``kind``."""
    shipped = getattr(adapter, "builtin_hook_kinds", None)
    if shipped is not None and kind not in shipped:
        pytest.skip(f"{NA_PREFIX}does not ship {kind} (its builtin_hook_kinds: {', '.join(sorted(shipped))})")


def _expected(kind, kwargs, params, grads, lrs, m, loss_scale):
    """Eq. (9) in float64 with the hook applied to the (scaled) gradients each step."""
    w = {k: v.astype(np.float64) for k, v in params.items()}
    u = {k: np.zeros_like(v) for k, v in w.items()}
    out = []
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True)):
        s = 1.0 if loss_scale is None else loss_scale
        seen = {k: s * np.asarray(v, np.float64) for k, v in g.items()}
        hooked = oracle.builtin_hook(kind, kwargs, w, seen, dict.fromkeys(w, t), loss_scale)
        for k in w:
            w[k], u[k] = oracle.eq9_step(w[k], u[k], hooked[k] / s, lr, m)
        out.append(dict(w))
    return out


@pytest.mark.requires("builtin_hooks", "hyperparams")
@pytest.mark.parametrize(("kind", "kwargs"), HOOKS, ids=[k for k, _ in HOOKS])
def test_builtin_hook_trajectory(adapter, kind, kwargs):
    """The built-in hook, registered with its defaults (an optimizer pre hook), changes the update as Chainer's does."""
    _require_hook(adapter, kind)
    params = problem(31, SHAPES)
    grads = gradients(31, params, 4)
    lrs = [0.1, 0.2, 0.2, 0.05]
    opt = adapter.create(params, lr=lrs[0], momentum=0.9)
    opt.add_builtin_hook(kind, **kwargs)
    got = run(opt, grads, lrs)
    want = _expected(kind, kwargs, params, grads, lrs, 0.9, None)
    plain = oracle_eq9(params, grads, lrs, [0.9] * 4)
    gap = max(float(np.max(np.abs(want[-1][k] - plain[-1][k]))) for k in SHAPES)
    assert gap > 1e-3, f"the suite's {kind} changes nothing here (test data problem)"
    assert_trajectory(got, want, np.float32, what=f"parameter with {kind},")


@pytest.mark.requires("builtin_hooks", "hyperparams", "loss_scaling")
@pytest.mark.parametrize("kind", ["WeightDecay", "Lasso", "GradientHardClipping"])
def test_builtin_hook_under_static_loss_scaling(adapter, kind):
    """Under a static scale s the hooks see s g: WeightDecay adds s lambda p (an effective rate lambda),
    Lasso adds lambda sign(p) unscaled (an effective rate lambda / s), hard clipping clips s g."""
    _require_hook(adapter, kind)
    kwargs = dict(HOOKS)[kind]
    params = problem(32, SHAPES)
    grads = gradients(32, params, 3)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.loss_scaling(scale=4.0)
    opt.add_builtin_hook(kind, **kwargs)
    got = run(opt, grads)
    want = _expected(kind, kwargs, params, grads, [0.1] * 3, 0.9, 4.0)
    assert_trajectory(got, want, np.float32, what=f"parameter with {kind} under loss scale 4,")


#: Hooks that measure the gradient (a norm) or add to it, with arguments under which a loss
#: scale of 8 matters: the scaled global norm (about 3.4) exceeds the threshold of 1, the true one does not.
NORM_HOOKS: list[tuple[str, dict[str, Any]]] = [
    ("GradientClipping", {"threshold": 1.0}),
    ("GradientLARS", {"threshold": 0.01, "weight_decay": 0.1, "eps": 1e-9}),
    ("GradientNoise", {"eta": 0.01, "noise": _noise}),
]


@pytest.mark.requires("builtin_hooks", "hyperparams", "loss_scaling")
@pytest.mark.parametrize(("kind", "kwargs"), NORM_HOOKS, ids=[k for k, _ in NORM_HOOKS])
def test_norm_hooks_under_static_loss_scaling(adapter, kind, kwargs):
    """Under a static scale s the optimizer pre hooks see s g and do not unscale it: clipping compares the
    *scaled* norm with the threshold (so it clips here, where the true norm is below it), LARS's trust
    ratio uses the scaled norm, and the noise is added to s g (so the update sees noise / s)."""
    _require_hook(adapter, kind)
    params = problem(35, SHAPES)
    grads = [{k: (0.2 * g).astype(np.float32) for k, g in step.items()} for step in gradients(35, params, 3)]
    true_norm = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads[0].values())))
    assert true_norm < 1.0 < 8.0 * true_norm, f"test data: true norm {true_norm} (test data problem)"
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.loss_scaling(scale=8.0)
    opt.add_builtin_hook(kind, **kwargs)
    got = run(opt, grads)
    want = _expected(kind, kwargs, params, grads, [0.1] * 3, 0.9, 8.0)
    unscaled = _expected(kind, kwargs, params, grads, [0.1] * 3, 0.9, None)
    gap = max(float(np.max(np.abs(want[-1][k] - unscaled[-1][k]))) for k in SHAPES)
    assert gap > 1e-4, f"the loss scale changes nothing for {kind} here (test data problem)"
    assert_trajectory(got, want, np.float32, what=f"parameter with {kind} under loss scale 8,")


@pytest.mark.requires("builtin_hooks", "hyperparams", "disabled_rules")
def test_gradient_noise_uses_each_rules_own_t(adapter):
    """GradientNoise's noise function gets the update rule, whose t counts that parameter's updates only."""
    _require_hook(adapter, "GradientNoise")
    params = problem(33, {"w": (3,), "b": (2,)})
    grads = gradients(33, params, 3)
    opt = adapter.create(params, lr=0.1, momentum=0.0)
    calls: list[tuple[tuple[int, ...], int]] = []

    def noise(shape, rule_t):
        calls.append((tuple(shape), rule_t))
        return _noise(shape, rule_t)

    opt.add_builtin_hook("GradientNoise", eta=0.01, noise=noise)
    opt.set_rule_enabled("b", False)
    run(opt, grads[:2])
    opt.set_rule_enabled("b", True)
    got = run(opt, grads[2:])
    b_calls = [t for shape, t in calls if shape == (2,)]
    assert b_calls == [0, 0, 0], f"rule t passed to the noise function for 'b' over three steps: {b_calls}"
    want_b = params["b"].astype(np.float64) - 0.1 * (grads[2]["b"] + _noise((2,), 0))
    assert_trajectory([{"b": got[0]["b"]}], [{"b": want_b}], np.float32)


@pytest.mark.requires("disabled_rules")
def test_disabled_rule_leaves_its_parameter_alone(adapter):
    """A disabled rule does nothing: its parameter, state and counter stay; the others follow eq. (9);
    enabled again, it starts from where it stopped."""
    params = problem(34, SHAPES)
    grads = gradients(34, params, 5)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.set_rule_enabled("b", False)
    got = run(opt, grads[:3])
    for t, step in enumerate(got, start=1):
        assert bitwise_equal(step["b"], params["b"]), f"disabled 'b' moved at step {t}"
    others = {k: v for k, v in params.items() if k != "b"}
    want = oracle_eq9(others, grads[:3], [0.1] * 3, [0.9] * 3)
    assert_trajectory([{k: s[k] for k in others} for s in got], want, np.float32)
    if "counters" in adapter.capabilities:
        assert (opt.t, opt.rule_t("b"), opt.rule_t("W")) == (3, 0, 3), (
            f"t, rule t of b, rule t of W = {(opt.t, opt.rule_t('b'), opt.rule_t('W'))}, expected (3, 0, 3)"
        )
    if "state" in adapter.capabilities:
        state = opt.state()["b"]
        assert state is None or not np.any(state), f"disabled 'b' has state {state}"
    opt.set_rule_enabled("b", True)
    with quiet():
        resumed = run(opt, grads[3:])
    want_b = oracle_eq9({"b": params["b"]}, grads[3:], [0.1] * 2, [0.9] * 2)
    assert_trajectory([{"b": s["b"]} for s in resumed], want_b, np.float32, what="re-enabled")


@pytest.mark.requires("disabled_rules", "hyperparams")
def test_rule_disabled_after_it_has_stepped(adapter):
    """Disabled after two updates (its state exists, it may be batched with the others), a rule does
    nothing: its parameter and state keep their bits, its t stays; enabled again, it resumes from its
    own buffer, while the other parameters follow eq. (9) throughout."""
    params = problem(36, SHAPES)
    grads = gradients(36, params, 6)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    run(opt, grads[:2])
    frozen = opt.params()["b"]
    frozen_state = opt.state()["b"] if "state" in adapter.capabilities else None
    opt.set_rule_enabled("b", False)
    got = run(opt, grads[2:4])
    for t, step in enumerate(got, start=3):
        assert bitwise_equal(step["b"], frozen), f"'b', disabled after step 2, moved at step {t}"
    if frozen_state is not None:
        state = opt.state()["b"]
        assert state is not None and bitwise_equal(state, frozen_state), (
            f"the state of 'b' changed while its rule was disabled: {frozen_state} -> {state}"
        )
    if "counters" in adapter.capabilities:
        assert (opt.t, opt.rule_t("b"), opt.rule_t("W")) == (4, 2, 4), (
            f"t, rule t of b, rule t of W = {(opt.t, opt.rule_t('b'), opt.rule_t('W'))}, expected (4, 2, 4)"
        )
    opt.set_rule_enabled("b", True)
    resumed = run(opt, grads[4:])
    others = {k: v for k, v in params.items() if k != "b"}
    want_others = oracle_eq9(others, grads, [0.1] * 6, [0.9] * 6)
    assert_trajectory([{k: s[k] for k in others} for s in got + resumed], want_others[2:], np.float32)
    # b: eq. (9) over its own updates only (steps 1, 2, 5, 6)
    want_b = oracle_eq9({"b": params["b"]}, [grads[i] for i in (0, 1, 4, 5)], [0.1] * 4, [0.9] * 4)
    assert_trajectory([{"b": s["b"]} for s in resumed], want_b[2:], np.float32, what="re-enabled")


@pytest.mark.requires("builtin_hooks", "hyperparams")
def test_lars_below_its_threshold_is_weight_decay(adapter):
    """GradientLARS from another angle than its trajectory: when no parameter's norm exceeds the
    threshold the trust ratio is 1 and the hook adds weight_decay * p, so the update is eq. (9)
    on g + 0.1 p (worked out here, not by the suite's model of the hook)."""
    _require_hook(adapter, "GradientLARS")
    params = problem(37, SHAPES)
    grads = gradients(37, params, 3)
    opt = adapter.create(params, lr=0.1, momentum=0.9)
    opt.add_builtin_hook("GradientLARS", threshold=1e6, weight_decay=0.1, eps=1e-9)
    got = run(opt, grads)
    w = {k: v.astype(np.float64) for k, v in params.items()}
    u = {k: np.zeros_like(v) for k, v in w.items()}
    want = []
    for g in grads:
        for k in w:
            u[k] = 0.9 * u[k] + (g[k].astype(np.float64) + 0.1 * w[k])
            w[k] = w[k] - 0.1 * u[k]
        want.append(dict(w))
    assert_trajectory(got, want, np.float32, what="parameter with GradientLARS below its threshold,")
