"""corrmom_ref.torch keeps the reference's guarantees (issue 20, the optimizer's part).

Frozen parameters are Chainer's disabled rules, foreign state dicts migrate
exactly or are refused, bad input is refused with the reference's rules and
messages before anything changes, and a skipped step warns the reference's
``NonFiniteGradientWarning`` at the caller's line. Expected values come from
the maths, from ``torch.optim.SGD`` or from the reference's own messages.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import corrmom_ref as cr  # noqa: E402
import corrmom_ref.torch as crt  # noqa: E402
from corrmom_ref.loss_scaling import NonFiniteGradientWarning  # noqa: E402

CLASSES = [crt.CorrectedMomentumSGD, crt.MomentumSGD]


def snapshot(opt):
    """Everything a failed call must leave as it was: parameters, state, counters, groups."""
    params = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    state = {id(p): copy.deepcopy(dict(s)) for p, s in opt.state.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return params, state, opt.t, opt.epoch, groups, [len(g["params"]) for g in opt.param_groups]


def assert_unchanged(opt, before):
    params, state, t, epoch, groups, sizes = snapshot(opt)
    assert all(torch.equal(a, b) for a, b in zip(params, before[0], strict=True))
    assert state.keys() == before[1].keys()
    for key, entry in state.items():
        old = before[1][key]
        assert entry.keys() == old.keys()
        for name, value in entry.items():
            assert torch.equal(value, old[name]) if isinstance(value, torch.Tensor) else value == old[name]
    assert (t, epoch, groups, sizes) == before[2:]


def two_layers(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


# -- 1. frozen parameters are disabled rules -------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_a_layer_frozen_from_the_start_is_left_alone_as_torch_sgd_leaves_it(cls):
    x = torch.randn(5, 3)
    runs = {}
    for kind in ("ours", "sgd"):
        net = two_layers()
        net[0].requires_grad_(False)
        if kind == "ours":
            opt = cls(net.parameters(), lr=0.1, momentum=0.9)
            opt.add_hook(crt.WeightDecay(0.5))
            opt.add_hook(crt.GradientHardClipping(-0.01, 0.01))
            opt.add_hook(crt.GradientClipping(0.05))
        else:
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        before = [p.detach().clone() for p in net[0].parameters()]
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
        runs[kind] = (net, opt, before)
    for net, _, before in runs.values():
        assert all(torch.equal(p, q) for p, q in zip(net[0].parameters(), before, strict=True))
        assert all(p.grad is None for p in net[0].parameters())
    net, opt, _ = runs["ours"]
    assert all(p not in opt.state for p in net[0].parameters()), "no state for a frozen parameter"
    assert all(opt.state[p]["t"] == 5 for p in net[2].parameters()) and opt.t == 5


def test_frozen_parameters_change_nothing_for_the_others():
    """An optimizer holding frozen parameters steps the trainable ones as one holding only them,
    hooks and global-norm clipping included (the frozen ones enter no norm)."""
    x = torch.randn(5, 3)
    results = []
    for include_frozen in (True, False):
        net = two_layers()
        net[0].requires_grad_(False)
        params = net.parameters() if include_frozen else net[2].parameters()
        opt = crt.CorrectedMomentumSGD(params, lr=0.1, momentum=0.9, fused=False)
        opt.add_hook(crt.WeightDecay(0.5))
        opt.add_hook(crt.GradientClipping(0.05))
        for _ in range(4):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
        results.append([p.detach().clone() for p in net[2].parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_per_parameter_hooks_skip_a_frozen_parameter_without_gradient():
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    trained = torch.nn.Parameter(torch.ones(2))
    opt = crt.CorrectedMomentumSGD([frozen, trained], lr=0.1)
    seen = []

    def spy(optimizer, param):
        seen.append(param)

    spy.call_for_each_param = True
    opt.add_hook(spy)
    opt.step()
    assert len(seen) == 1 and seen[0] is trained
    assert frozen.grad is None and torch.equal(frozen, torch.ones(2))


def test_freezing_mid_run_keeps_the_state_and_unfreezing_resumes_it():
    lr, m = 0.1, 0.9
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = crt.CorrectedMomentumSGD([w], lr=lr, momentum=m, fused=False)
    for _ in range(2):
        w.grad = torch.tensor([1.0, 0.5])
        opt.step()
    saved_w, saved_v, saved_t = w.detach().clone(), opt.state[w]["v"].clone(), opt.state[w]["t"]
    w.requires_grad_(False)
    opt.zero_grad()
    for _ in range(3):
        opt.step()
    assert torch.equal(w, saved_w) and torch.equal(opt.state[w]["v"], saved_v)
    assert opt.state[w]["t"] == saved_t == 2 and opt.t == 5 and w.grad is None
    w.requires_grad_(True)
    g = torch.tensor([0.25, -1.0])
    w.grad = g.clone()
    opt.step()
    v = saved_v * m - g  # Chainer's step from the state kept while frozen
    assert torch.equal(opt.state[w]["v"], v) and torch.equal(w, saved_w + lr * v)
    assert opt.state[w]["t"] == 3


def test_a_frozen_parameter_whose_rule_state_came_with_a_stale_gradient_does_not_move():
    """Frozen after backward (the gradient still there): no step, as a disabled rule; the
    non-finite check still reads that gradient, as Chainer's reads every parameter's."""
    w = torch.nn.Parameter(torch.ones(2))
    other = torch.nn.Parameter(torch.ones(2))
    opt = crt.CorrectedMomentumSGD([("w", w), ("other", other)], lr=0.1)
    w.grad, other.grad = torch.ones(2), torch.ones(2)
    w.requires_grad_(False)
    opt.step()
    assert torch.equal(w, torch.ones(2)) and w not in opt.state
    assert not torch.equal(other, torch.ones(2))
    w.grad = torch.tensor([1.0, math.inf])
    with pytest.warns(NonFiniteGradientWarning, match="of w"):
        opt.step(check_finite=True)
    assert opt.last_step_skipped


# -- 2. foreign state dicts and group keys -------------------------------------------------------


def sgd_trained(steps=5, **options):
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(64))
    sgd = torch.optim.SGD([a], lr=0.1, momentum=0.9, **options)
    for _ in range(steps):
        a.grad = torch.randn(64)
        sgd.step()
    return a, sgd


def test_plain_sgd_state_dict_migrates_and_continues_as_sgd_bitwise():
    """v = -b is exact, and negation commutes with every rounding: the fused step after the
    migration is torch.optim.SGD's fused step to the bit, through an lr schedule too."""
    a, sgd = sgd_trained(fused=True)
    b = torch.nn.Parameter(a.detach().clone())
    ours = crt.CorrectedMomentumSGD([b], lr=0.5, momentum=0.5, fused=True)
    ours.load_state_dict(sgd.state_dict())
    assert torch.equal(ours.state[b]["v"], -sgd.state[a]["momentum_buffer"])
    assert ours.t == 0 and ours.state[b]["t"] == 0 and ours.epoch == 0
    assert ours.param_groups[0]["lr"] == 0.1 and ours.param_groups[0]["momentum"] == 0.9
    assert set(ours.param_groups[0]) == {"params", "lr", "momentum"}
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5) for o in (sgd, ours)]
    for _ in range(10):
        g = torch.randn(64)
        a.grad, b.grad = g.clone(), g.clone()
        sgd.step()
        ours.step()
        for s in scheds:
            s.step()
    assert torch.equal(a, b)
    assert torch.equal(ours.state[b]["v"], -sgd.state[a]["momentum_buffer"])
    assert ours.t == 10 and ours.state[b]["t"] == 10


def test_migrated_generic_step_is_within_one_rounding_per_product_of_sgd():
    a, sgd = sgd_trained(foreach=False)
    b = torch.nn.Parameter(a.detach().clone())
    ours = crt.CorrectedMomentumSGD([b], lr=0.1, momentum=0.9, fused=False)
    ours.load_state_dict(sgd.state_dict())
    g = torch.randn(64)
    a.grad, b.grad = g.clone(), g.clone()
    sgd.step()
    ours.step()
    ulp = torch.finfo(torch.float32).eps * a.detach().abs().clamp_min(1.0)
    assert torch.all((a - b).abs() <= 2 * ulp)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"nesterov": True}, "'nesterov'"),
        ({"weight_decay": 0.5}, "corrmom_ref.torch.WeightDecay"),
        ({"dampening": 0.1}, "'dampening'"),
        ({"maximize": True}, "'maximize'"),
    ],
)
def test_sgd_state_dict_with_another_setting_is_refused_before_anything_changes(options, named):
    _, sgd = sgd_trained(**options)
    w = torch.nn.Parameter(torch.zeros(64))
    ours = crt.CorrectedMomentumSGD([w], lr=0.2, momentum=0.5)
    w.grad = torch.ones(64)
    ours.step()
    before = snapshot(ours)
    with pytest.raises(ValueError, match=named):
        ours.load_state_dict(sgd.state_dict())
    assert_unchanged(ours, before)


def test_unknown_per_parameter_state_keys_are_refused_naming_the_key():
    a = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([a], lr=0.1)
    a.grad = torch.ones(3)
    adam.step()
    w = torch.nn.Parameter(torch.zeros(3))
    ours = crt.CorrectedMomentumSGD([w], lr=0.1)
    before = snapshot(ours)
    with pytest.raises(ValueError, match="amsgrad"):
        ours.load_state_dict(adam.state_dict())
    sd = ours.state_dict()
    sd["state"] = {0: {"t": 1, "v": torch.ones(3), "momentum": torch.ones(3)}}
    with pytest.raises(ValueError, match=r"parameter 0: unknown key 'momentum'"):
        ours.load_state_dict(sd)
    assert_unchanged(ours, before)


def test_momentum_sgd_refuses_an_sgd_buffer_it_cannot_hold_exactly():
    _, sgd = sgd_trained()
    w = torch.nn.Parameter(torch.zeros(64))
    ours = crt.MomentumSGD([w], lr=0.1)
    with pytest.raises(ValueError, match="CorrectedMomentumSGD, whose v is -b exactly"):
        ours.load_state_dict(sgd.state_dict())
    assert ours.state == {}


@pytest.mark.parametrize("cls", CLASSES)
def test_group_keys_with_a_meaning_not_implemented_are_refused_naming_the_key(cls):
    w, u = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"'weight_decay'.*corrmom_ref\.torch\.WeightDecay"):
        cls([{"params": [w], "weight_decay": 1e-4}], lr=0.1)
    opt = cls([w], lr=0.1)
    for group, key in [
        ({"params": [u], "weight_decay": 0.0}, "'weight_decay'"),
        ({"params": [u], "nesterov": True}, "'nesterov'"),
        ({"params": [u], "betas": (0.9, 0.99)}, "'betas'"),
        ({"params": [u], "differentiable": True}, "differentiable=True"),
    ]:
        with pytest.raises(ValueError, match=key):
            opt.add_param_group(group)
        assert len(opt.param_groups) == 1
    opt.param_groups[0]["nesterov"] = True  # set after construction: refused by the step
    w.grad = torch.ones(2)
    before = snapshot(opt)
    with pytest.raises(ValueError, match="'nesterov'"):
        opt.step()
    assert_unchanged(opt, before)


def test_torch_structural_group_keys_are_accepted():
    net = torch.nn.Linear(2, 2)
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
    extra = {"params": [("extra", torch.nn.Parameter(torch.zeros(1)))], "foreach": None, "fused": None}
    opt.add_param_group(extra)
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)  # adds initial_lr
    opt.step()
    assert "param_names" in opt.param_groups[0] and "initial_lr" in opt.param_groups[1]


# -- 4. the reference's input rules and messages -------------------------------------------------


def reference_message(cls_name, **kwargs):
    with pytest.raises((TypeError, ValueError)) as caught:
        getattr(cr, cls_name)(**kwargs)
    return str(caught.value)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    "kwargs",
    [{"lr": -0.1}, {"momentum": -0.5}, {"lr": math.nan}, {"momentum": math.inf}, {"lr": "0.1"}, {"lr": True}],
)
def test_constructor_refuses_what_the_reference_refuses_with_its_message(cls, kwargs):
    expected = reference_message(cls.__name__, **kwargs)
    with pytest.raises((TypeError, ValueError)) as caught:
        cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert str(caught.value) == expected
    assert "_ChainerMomentum" not in expected


def test_one_element_tensor_learning_rates_are_accepted():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = crt.CorrectedMomentumSGD([w], lr=torch.tensor(0.5), momentum=0.0)
    w.grad = torch.ones(2)
    opt.step()
    assert torch.equal(w, torch.full((2,), -0.5))


@pytest.mark.parametrize(("key", "bad"), [("lr", -0.1), ("momentum", -1.0), ("lr", math.nan), ("lr", None)])
def test_a_bad_group_value_set_later_is_refused_at_step_before_anything_changes(key, bad):
    net = two_layers()
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
    opt.add_param_group({"params": [("extra", torch.nn.Parameter(torch.ones(2)))]})
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    opt.param_groups[1][key] = bad
    before = snapshot(opt)
    with pytest.raises(
        (TypeError, ValueError), match=f"CorrectedMomentumSGD param group 1: hyperparameter {key!r}"
    ):
        opt.step()
    assert_unchanged(opt, before)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_and_boolean_parameters_are_refused_naming_them(dtype):
    ref = cr.Parameter(np.zeros(2, dtype=str(dtype).removeprefix("torch.")))
    from corrmom_ref._validation import check_parameter_dtype

    with pytest.raises(TypeError) as reference:
        check_parameter_dtype(ref, "steps", "CorrectedMomentumSGD")
    shared = str(reference.value).split("; ")[0]  # the reference's wording, up to the hint
    counter = torch.nn.Parameter(torch.zeros(2, dtype=dtype), requires_grad=False)
    with pytest.raises(TypeError) as caught:
        crt.CorrectedMomentumSGD([("steps", counter)], lr=0.1)
    assert str(caught.value).startswith(shared) and "leave it out" in str(caught.value)
    opt = crt.CorrectedMomentumSGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="parameter 0 of param group 1 has dtype"):
        opt.add_param_group({"params": [counter]})
    assert len(opt.param_groups) == 1


def test_an_integer_parameter_made_later_is_frozen_and_never_touched():
    """PyTorch lets no integer tensor require a gradient, so one is always frozen: skipped."""
    w = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    opt = crt.CorrectedMomentumSGD([w], lr=0.1)
    w.data = torch.tensor([3, 4])
    with pytest.raises(RuntimeError):
        w.requires_grad_(True)
    opt.step()
    assert torch.equal(w, torch.tensor([3, 4])) and w not in opt.state


@pytest.mark.parametrize("scale", [math.inf, 0.0, -2.0, math.nan])
def test_a_bad_loss_scale_is_refused_before_anything_changes(scale):
    w = torch.nn.Parameter(torch.ones(2))
    opt = crt.CorrectedMomentumSGD([w], lr=0.1)
    w.grad = torch.ones(2)
    before = snapshot(opt)
    with pytest.raises(ValueError, match="loss_scale"):
        opt.step(loss_scale=scale)
    assert_unchanged(opt, before)
    assert torch.equal(w.grad, torch.ones(2))


# -- 6. the skipped-step warning ---------------------------------------------------------------------


def overflowing(scheduler=False):
    net = torch.nn.Linear(2, 1)
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
    if scheduler:
        torch.optim.lr_scheduler.StepLR(opt, step_size=1)  # wraps opt.step once more
    net.weight.grad = torch.tensor([[1.0, math.inf]])
    net.bias.grad = torch.tensor([math.nan])
    return opt


@pytest.mark.parametrize("through", ["step", "scaler", "scheduler"])
def test_the_warning_is_the_references_and_points_at_the_callers_line(through):
    opt = overflowing(scheduler=through == "scheduler")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if through == "scaler":
            crt.LossScaler().step(opt)
        else:
            opt.step(check_finite=True)
    assert [type(w.message) for w in caught] == [NonFiniteGradientWarning] * 2
    assert {w.filename for w in caught} == {__file__}
    assert [w.message.path for w in caught] == ["weight", "bias"]
    assert caught[0].message.iteration == 0


def test_a_thousand_skipped_steps_leave_one_warning_per_parameter():
    opt = overflowing()
    registry = globals().setdefault("__warningregistry__", {})
    registry.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(1000):
            opt.step(check_finite=True)
    assert opt.t == 1000 and len(caught) == 2
    entries = [k for k in registry if isinstance(k, tuple) and k[1] is NonFiniteGradientWarning]
    assert len(entries) == 2


# -- 7. torch.compile in a real loop -----------------------------------------------------------------


def compiled_loop(kind, steps, *, compiled=True, scaler=False, overflow_at=(), method=False):
    """A training loop: zero_grad (gradients to None), forward, backward, the (compiled) step, an
    lr schedule. Returns the parameters, dynamo's (frames, graphs) counts after each step and
    whether dynamo gave up for hitting its recompile limit (then it runs the rest eagerly)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net = two_layers(seed=3)
    if kind == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1, momentum=0.9, fused=False)
    loss_scaler = crt.LossScaler(interval=2) if scaler else None

    def step():
        if loss_scaler is None:
            opt.step()
        else:
            loss_scaler.step(opt)

    run = torch.compile(opt.step if method else step, backend="eager") if compiled else step
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    counts = []
    for i in range(steps):
        opt.zero_grad()
        loss = net(x).pow(2).sum() * (math.inf if i in overflow_at else 1.0)
        (loss if loss_scaler is None else loss_scaler.scale(loss)).backward()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteGradientWarning)
            run()
        if loss_scaler is not None:
            loss_scaler.update()
        schedule.step()
        counts.append((counters["frames"]["total"], counters["stats"]["unique_graphs"]))
    gave_up = any("recompile limit" in reason for reason in counters["unimplemented"])
    return [p.detach().clone() for p in net.parameters()], counts, gave_up


@pytest.mark.parametrize("method", [False, True], ids=["a function calling opt.step", "opt.step"])
# torch.compile(opt.step) bypasses the wrapper that tells the scheduler a step ran (torch.optim.SGD too)
@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")
def test_compiled_step_compiles_no_more_often_than_torch_sgd_with_eager_numbers(method):
    ours, our_counts, gave_up = compiled_loop("ours", 20, method=method)
    _, sgd_counts, _ = compiled_loop("sgd", 20, method=method)
    assert our_counts[-1][0] <= sgd_counts[-1][0] and our_counts[-1][1] <= sgd_counts[-1][1]
    assert our_counts[9] == our_counts[-1] and not gave_up, "nothing compiles after a few steps"
    eager, _, _ = compiled_loop("ours", 20, compiled=False)
    assert all(torch.equal(a, b) for a, b in zip(ours, eager, strict=True))


def test_compiled_loss_scaler_step_gives_the_eager_numbers_without_recompiling():
    compiled, counts, gave_up = compiled_loop("ours", 24, scaler=True, overflow_at=(4, 15))
    eager, _, _ = compiled_loop("ours", 24, compiled=False, scaler=True, overflow_at=(4, 15))
    assert all(torch.equal(a, b) for a, b in zip(compiled, eager, strict=True))
    assert counts[9] == counts[-1] and not gave_up, "a new scale, a skipped step, a new lr compile nothing"


def test_a_float16_parameters_float32_buffer_survives_load_state_dict():
    """Under fp32_master the buffer lives in float32; a loaded run continues the uninterrupted one."""

    def made(w):
        return crt.CorrectedMomentumSGD([w], lr=1e-3, momentum=0.9, fp32_master=True, fused=False)

    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    opt = made(w)
    w.grad = torch.full((3,), 1e-3, dtype=torch.float16)
    opt.step()
    u = torch.nn.Parameter(w.detach().clone())
    resumed = made(u)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.state[u]["v"].dtype == torch.float32
    for _ in range(3):
        w.grad = torch.full((3,), 1e-3, dtype=torch.float16)
        u.grad = w.grad.clone()
        opt.step()
        resumed.step()
    assert torch.equal(opt.state[w]["v"], resumed.state[u]["v"]) and torch.equal(w, u)


def test_a_snapshot_of_a_model_with_a_frozen_layer_loads_strictly(tmp_path):
    """A frozen layer has no buffer, so its snapshot holds only ``<path>/t`` (as Chainer writes a
    rule never updated); loading it back, strict, gives the frozen parameter its t and no state, as
    Chainer loads a disabled rule, and the run continues as the uninterrupted one."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    net[0].requires_grad_(False)
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(5, 3)

    def step(o):
        o.zero_grad()
        net(x).pow(2).sum().backward()
        o.step()

    step(opt)
    crt.save_chainer_snapshot(tmp_path / "snap.npz", opt, module=net)
    resumed = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1, momentum=0.9)
    crt.load_chainer_snapshot(resumed, tmp_path / "snap.npz", module=net)
    assert all(p not in resumed.state or "v" not in resumed.state[p] for p in net[0].parameters())
    before = [p.detach().clone() for p in net.parameters()]
    step(resumed)
    after_resumed = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p, b in zip(net.parameters(), before, strict=True):
            p.copy_(b)
    step(opt)
    assert all(torch.equal(a, p) for a, p in zip(after_resumed, net.parameters(), strict=True))
