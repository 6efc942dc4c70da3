"""corrmom_ref.torch: the optimizers, the loss scaler, the hooks and the snapshots, against NumPy.

Expected values are Chainer's in-place NumPy arithmetic written out here
(``v *= m; v -= g; p += lr * v``), so ``fused=False`` must match bitwise and
the fused kernel within one rounding per product.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import corrmom_ref as cr  # noqa: E402
import corrmom_ref.torch as crt  # noqa: E402
from corrmom_ref.serializers import chainer_layout  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


def chainer_corrected(p, g, v, lr, m):
    """Chainer's CorrectedMomentumSGD step on NumPy, in place."""
    v *= np.float32(m)
    v -= g
    p += np.float32(lr) * v


def chainer_uncorrected(p, g, v, lr, m):
    """Chainer's MomentumSGD step on NumPy, in place."""
    v *= np.float32(m)
    v -= np.float32(lr) * g
    p += v


def tensors(seed, shapes):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def named_params(arrays):
    return {k: torch.nn.Parameter(torch.from_numpy(a.copy())) for k, a in arrays.items()}


SHAPES = {"a": (3, 4), "b": (5,)}


@pytest.mark.parametrize(
    ("cls", "numpy_step"),
    [(crt.CorrectedMomentumSGD, chainer_corrected), (crt.MomentumSGD, chainer_uncorrected)],
)
def test_generic_steps_are_chainers_numpy_arithmetic_bitwise(cls, numpy_step):
    """fused=False, per-group lr and momentum, lr changes between steps: bitwise Chainer's NumPy numbers."""
    init = tensors(0, SHAPES)
    params = named_params(init)
    opt = cls([{"params": [params["a"]]}, {"params": [params["b"]], "momentum": 0.5}], lr=0.1, fused=False)
    want = {k: a.copy() for k, a in init.items()}
    vs = {k: np.zeros_like(a) for k, a in init.items()}
    momenta = {"a": 0.9, "b": 0.5}
    for step, lr in enumerate([0.1, 0.2, 0.05, 0.05]):
        grads = tensors(10 + step, SHAPES)
        for group in opt.param_groups:
            group["lr"] = lr
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
            numpy_step(want[k], grads[k], vs[k], lr, momenta[k])
        opt.step()
        for k, p in params.items():
            np.testing.assert_array_equal(p.detach().numpy(), want[k], err_msg=f"{k} at step {step + 1}")
            np.testing.assert_array_equal(opt.state[p]["v"].numpy(), vs[k])
            assert opt.state[p]["t"] == step + 1
    assert opt.t == 4


def test_fused_within_one_rounding_per_product_of_the_generic_step():
    init = tensors(1, {"w": (1000,)})
    fused = crt.CorrectedMomentumSGD(list(named_params(init).values()), lr=0.3, fused=True)
    plain = crt.CorrectedMomentumSGD(list(named_params(init).values()), lr=0.3, fused=False)
    assert fused.fused and not plain.fused
    for step in range(3):
        g = tensors(20 + step, {"w": (1000,)})["w"]
        v_before = plain.state[plain.param_groups[0]["params"][0]].get("v")
        for opt in (fused, plain):
            opt.param_groups[0]["params"][0].grad = torch.from_numpy(g.copy())
            opt.step()
        pf, pg = (o.param_groups[0]["params"][0] for o in (fused, plain))
        vf, vg = fused.state[pf]["v"].numpy(), plain.state[pg]["v"].numpy().astype(np.float64)
        v0 = np.zeros_like(vg) if v_before is None else v_before.numpy().astype(np.float64)
        bound_v = EPS32 * (np.abs(0.9 * v0) + np.abs(vg))
        assert np.all(np.abs(vf - vg) <= bound_v)
        bound_w = 0.3 * bound_v + EPS32 * (np.abs(0.3 * vg) + np.abs(pg.detach().numpy()))
        assert np.all(np.abs(pf.detach().numpy() - pg.detach().numpy()) <= bound_w)
        # the fused twin restarts from the generic one, so differences cannot accumulate
        with torch.no_grad():
            pf.copy_(pg)
            fused.state[pf]["v"].copy_(plain.state[pg]["v"])


def test_buffer_starts_at_zero_unlike_torch_sgd():
    """Step 1 is p - lr g with v = -g; with dampening, torch.optim.SGD's first step differs."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = crt.CorrectedMomentumSGD([w], lr=0.5, momentum=0.9)
    assert opt.state[w] == {}
    w.grad = torch.tensor([0.25, 1.0])
    opt.step()
    assert w.tolist() == [0.875, -2.5]
    assert opt.state[w]["v"].tolist() == [-0.25, -1.0]
    w.grad = torch.tensor([0.25, 1.0])
    opt.step()  # v = 0.9 * -0.25 - 0.25 = -0.475
    np.testing.assert_allclose(w.detach().numpy(), [0.875 - 0.5 * 0.475, -2.5 - 0.5 * 1.9], rtol=1e-6)


def test_parameter_without_gradient_still_moves_by_its_momentum():
    w = torch.nn.Parameter(torch.tensor([0.0]))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.5, fused=False)
    w.grad = torch.tensor([1.0])
    opt.step()
    opt.zero_grad()  # set_to_none: Chainer's cleargrads
    assert w.grad is None
    opt.step()
    assert w.item() == -1.5  # v = -1 then -0.5
    assert torch.equal(w.grad, torch.zeros(1)), "Chainer reallocates a cleared gradient as zeros"


def test_works_with_lr_schedulers():
    w = torch.nn.Parameter(torch.tensor([0.0]))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.0, fused=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w.grad = torch.tensor([1.0])
        opt.step()
        sched.step()
    assert w.item() == -(1.0 + 0.5 + 0.25)


def test_state_dict_round_trip_continues_bitwise():
    init = tensors(2, SHAPES)
    a, b = named_params(init), named_params(init)
    opt_a = crt.CorrectedMomentumSGD(a.items(), lr=0.1)
    for step in range(3):
        for k, p in a.items():
            p.grad = torch.from_numpy(tensors(30 + step, SHAPES)[k])
        opt_a.step()
    opt_a.new_epoch()
    for k in b:
        with torch.no_grad():
            b[k].copy_(a[k])
    opt_b = crt.CorrectedMomentumSGD(b.items(), lr=0.7)
    opt_b.load_state_dict(opt_a.state_dict())
    assert (opt_b.t, opt_b.epoch, opt_b.param_groups[0]["lr"]) == (3, 1, 0.1)
    for step in range(2):
        for params in (a, b):
            for k, p in params.items():
                p.grad = torch.from_numpy(tensors(40 + step, SHAPES)[k])
        opt_a.step()
        opt_b.step()
    for k in a:
        assert torch.equal(a[k], b[k])


def test_fp32_master_accumulates_steps_below_half_a_float16_ulp():
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    opt = crt.CorrectedMomentumSGD([w], lr=1e-4, momentum=0.9, fp32_master=True)
    master = np.float32(1.0)
    v = np.float32(0.0)
    for _ in range(6):
        w.grad = torch.ones(4, dtype=torch.float16)
        opt.step()
        v = np.float32(0.9) * v - np.float32(1.0)
        master = master + np.float32(1e-4) * v
        assert w[0].item() == float(np.float16(master))
    assert w[0].item() != 1.0
    assert opt.state[w]["master"].dtype == torch.float32
    fresh = crt.CorrectedMomentumSGD([w], lr=1e-4, momentum=0.9, fp32_master=True)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.state[w]["master"].dtype == torch.float32, "load_state_dict must not cast the master"


def test_non_finite_gradient_skips_the_step_warning_with_the_name():
    net = torch.nn.Linear(2, 1)
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    net.weight.grad = torch.tensor([[1.0, float("nan")]])
    net.bias.grad = torch.tensor([1.0])
    with pytest.warns(UserWarning, match="weight"):
        opt.step(check_finite=True)
    assert opt.last_step_skipped and opt.t == 1
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    assert all(opt.state[p] == {} for p in net.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()  # without check_finite the NaN goes through, as in Chainer without dynamic scaling
    assert torch.isnan(net.weight).any() and not opt.last_step_skipped


@pytest.mark.parametrize("bad", [float("nan"), "0.1", None])
def test_bad_hyperparameters_raise_before_anything_changes(bad):
    w = torch.nn.Parameter(torch.zeros(2))
    opt = crt.CorrectedMomentumSGD([w], lr=0.1)
    opt.param_groups[0]["lr"] = bad
    w.grad = torch.ones(2)
    with pytest.raises((TypeError, ValueError), match="param group 0: hyperparameter 'lr'"):
        opt.step()
    assert opt.t == 0 and torch.equal(w, torch.zeros(2))


def test_torch_compile_of_the_step_gives_the_eager_numbers():
    """(The loop with a scheduler and a loss scaler, and the compile counts, are in
    ``torch_port/test_guarantees.py``.)"""

    def make():
        torch.manual_seed(0)
        net = torch.nn.Linear(5, 3)
        return net, crt.CorrectedMomentumSGD(net.parameters(), lr=0.1, fused=False)

    x = torch.randn(8, 5)
    eager, compiled = make(), make()
    step = torch.compile(compiled[1].step, backend="eager")
    for _ in range(3):
        for (net, opt), run in ((eager, eager[1].step), (compiled, step)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            run()
    assert all(
        torch.equal(p, q) for p, q in zip(eager[0].parameters(), compiled[0].parameters(), strict=True)
    )


# -- the loss scaler ----------------------------------------------------------------


def scaler_run(pattern, interval):
    w = torch.nn.Parameter(torch.zeros(2))
    opt = crt.CorrectedMomentumSGD([w], lr=0.1)
    scaler = crt.LossScaler(interval=interval)
    out = []
    for overflow in pattern:
        scaler.scale(torch.tensor(1.0))
        w.grad = torch.tensor([float("inf") if overflow else 0.5, 0.25]) * scaler.get_scale()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scaler.step(opt)
        scaler.update()
        out.append(scaler.get_scale())
    return out, opt


def test_dynamic_scale_doubles_until_the_first_overflow_then_per_interval():
    got, opt = scaler_run([False] * 3 + [True] + [False] * 4, interval=2)
    assert got[:4] == [2.0, 4.0, 8.0, 4.0]
    np.testing.assert_allclose(got[4:], [4 * 2**0.5, 8, 8 * 2**0.5, 16], rtol=1e-12)
    assert opt.t == 8 and opt.state[opt.param_groups[0]["params"][0]]["t"] == 7


def test_dynamic_scale_is_clamped_to_one_and_65504():
    assert scaler_run([True] * 3, interval=1)[0] == [1.0, 1.0, 1.0]
    got = scaler_run([False] * 17 + [True], interval=1)[0]
    assert got[15:] == [65504.0, 65504.0, 32752.0]


def test_static_scale_unscales_and_never_skips():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.0, fused=False)
    scaler = crt.LossScaler(scale=8.0)
    loss = scaler.scale((w - 1.0).pow(2).sum())  # d/dw = 2 (w - 1) = -2, scaled -16
    loss.backward()
    assert w.grad.item() == -16.0
    scaler.step(opt)
    scaler.update()
    assert w.item() == 2.0 and scaler.get_scale() == 8.0


def test_unscale_then_step_divides_once():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.0, fused=False)
    scaler = crt.LossScaler(scale=4.0)
    w.grad = torch.tensor([8.0])
    scaler.unscale_(opt)
    assert w.grad.item() == 2.0
    with pytest.raises(RuntimeError, match="already"):
        scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert w.item() == -2.0


def test_scaler_state_dict_round_trip_and_errors():
    scaler = crt.LossScaler(interval=3)
    state = {"scale": 3.5, "dynamic": True, "interval": 3, "nonfinite_ever": True}
    scaler.load_state_dict(state)
    assert scaler.state_dict() == state
    with pytest.raises(KeyError):
        crt.LossScaler().load_state_dict({"scale": 2.0})
    with pytest.raises(RuntimeError, match="without a step"):
        crt.LossScaler().update()
    for bad in ({"interval": 0}, {"scale": 0.0}, {"scale": -1.0}):
        with pytest.raises(ValueError):
            crt.LossScaler(**bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"scale": float("inf")},
            r"^loss scale: a loss scale must be finite and in \[2\*\*-126, 2\*\*126\], got inf$",
        ),
        ({"scale": float("nan")}, r"^loss scale: a loss scale must be finite and in .*, got nan$"),
        ({"scale": "2"}, r"^loss scale: expected a real number, got '2' \(str\)$"),
        ({"scale": True}, r"^loss scale: expected a real number, got True \(bool\)$"),
        ({"interval": 1.5}, r"^interval: expected an integer, got 1\.5 \(float\)$"),
        ({"interval": False}, r"^interval: expected an integer, got False \(bool\)$"),
    ],
)
def test_scaler_refuses_what_the_reference_refuses_with_its_message(kwargs, match):
    """LossScaler(scale=inf) was accepted and failed at the first step (issue 20, item 4)."""
    with pytest.raises(ValueError, match=match):
        crt.LossScaler(**kwargs)
    reference = cr.CorrectedMomentumSGD().setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    with pytest.raises(ValueError, match=match):
        reference.loss_scaling(**kwargs)


GOOD_SCALER_STATE = {"scale": 4.0, "dynamic": True, "interval": 3, "nonfinite_ever": True}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"dynamic": 0.0}, TypeError, r"'dynamic': expected a bool, got 0\.0"),
        ({"scale": float("inf")}, ValueError, r"'scale': a loss scale must be finite"),
        ({"scale": "2"}, TypeError, r"'scale': expected a real number"),
        ({"scale": np.datetime64(4, "s")}, TypeError, r"'scale': expected a real number"),
        ({"interval": 2**64 - 1}, ValueError, r"'interval': must be an integer in \[1, 2\*\*63 - 1\]"),
        ({"interval": 1.5}, TypeError, r"'interval': expected an integer"),
        ({"nonfinite_ever": 1}, TypeError, r"'nonfinite_ever': expected a bool"),
        ({"nonfinite_ever": None}, KeyError, r"'nonfinite_ever' is missing"),
        ({"extra": 1}, KeyError, r"unknown key 'extra'"),
    ],
)
def test_scaler_load_state_dict_refuses_bad_values_and_changes_nothing(change, error, match):
    scaler = crt.LossScaler(scale=8.0)
    before = scaler.state_dict()
    state = {**GOOD_SCALER_STATE, **change}
    state = {k: v for k, v in state.items() if v is not None}
    with pytest.raises(error, match=match):
        scaler.load_state_dict(state)
    assert scaler.state_dict() == before


def test_scaler_update_with_a_bad_new_scale_is_refused():
    scaler = crt.LossScaler(scale=8.0)
    with pytest.raises(ValueError, match=r"^loss scale: a loss scale must be finite .*got inf$"):
        scaler.update(float("inf"))
    assert scaler.get_scale() == 8.0


# -- hooks --------------------------------------------------------------------------


def one_step_with_hook(hook, scale=None, grad=(0.5, -4.0), p0=(1.0, -2.0)):
    w = torch.nn.Parameter(torch.tensor(p0))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.0, fused=False)
    opt.add_hook(hook)
    w.grad = torch.tensor(grad) * (scale or 1.0)
    opt.step(loss_scale=scale)
    return w.detach().numpy()


def test_weight_decay_multiplies_its_rate_by_the_loss_scale_as_chainer():
    p0, g = np.array([1.0, -2.0], np.float32), np.array([0.5, -4.0], np.float32)
    for scale in (None, 8.0):
        got = one_step_with_hook(crt.WeightDecay(0.25), scale)
        s = np.float32(scale or 1.0)
        g_seen = g * s + np.float32(0.25 * (scale or 1.0)) * p0
        np.testing.assert_array_equal(got, p0 - g_seen / s)


def test_lasso_does_not_multiply_by_the_loss_scale():
    got = one_step_with_hook(crt.Lasso(0.5), 4.0)
    np.testing.assert_array_equal(got, [1.0 - (2.0 + 0.5) / 4, -2.0 - (-16.0 - 0.5) / 4])


def test_hard_clipping_and_clipping_by_global_norm():
    np.testing.assert_array_equal(one_step_with_hook(crt.GradientHardClipping(-1.0, 0.25)), [0.75, -1.0])
    # norm of (3, 4) is 5; threshold 1 scales by 0.2
    np.testing.assert_allclose(
        one_step_with_hook(crt.GradientClipping(1.0), grad=(3.0, 4.0)), [0.4, -2.8], rtol=1e-6
    )
    np.testing.assert_array_equal(
        one_step_with_hook(crt.GradientClipping(10.0), grad=(3.0, 4.0)), [-2.0, -6.0]
    )


def test_hook_order_timing_and_naming_rules():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = crt.CorrectedMomentumSGD([w], lr=0.1)
    seen = []

    def pre(o):
        seen.append(("pre", o.t))

    def post(o):
        seen.append(("post", o.t))

    handle = opt.add_hook(pre)
    opt.add_hook(post, timing="post")
    with pytest.raises(KeyError):
        opt.add_hook(pre, name="post")
    with pytest.raises(ValueError):
        opt.add_hook(pre, name="x", timing="later")
    with pytest.raises(TypeError):
        opt.add_hook(3, name="three")
    opt.step()
    assert seen == [("pre", 0), ("post", 1)]
    handle.remove()
    opt.step()
    assert seen[-1] == ("post", 2) and len(seen) == 3
    with pytest.raises(KeyError):
        opt.remove_hook("pre")


# -- snapshots ------------------------------------------------------------------------


def trained(seed=3, steps=2):
    net = torch.nn.Sequential()
    net.add_module("l1", torch.nn.Linear(3, 2))
    torch.manual_seed(seed)
    net.l1.reset_parameters()
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.ones(4, 3)).pow(2).sum().backward()
        opt.step()
    return net, opt


def test_snapshot_has_chainers_keys_and_values(tmp_path):
    net, opt = trained()
    opt.new_epoch()
    crt.save_chainer_snapshot(tmp_path / "s.npz", opt)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"t", "epoch", "l1/W/t", "l1/W/v", "l1/b/t", "l1/b/v"}
        assert (int(npz["t"]), int(npz["epoch"]), int(npz["l1/W/t"])) == (2, 1, 2)
        np.testing.assert_array_equal(npz["l1/W/v"], opt.state[net.l1.weight]["v"].numpy())
    assert crt.default_chainer_path("enc.0.weight") == "enc/0/W"
    assert crt.default_chainer_path("bn.gamma") == "bn/gamma"


def test_snapshot_continues_in_the_reference(tmp_path):
    """Our file loads into corrmom_ref's own CorrectedMomentumSGD, which continues exactly as we do."""
    net, opt = trained()
    crt.save_chainer_snapshot(tmp_path / "s.npz", opt)
    link = cr.Link(
        l1=cr.Link(
            W=cr.Parameter(net.l1.weight.detach().numpy().copy()),
            b=cr.Parameter(net.l1.bias.detach().numpy().copy()),
        )
    )
    ref = cr.CorrectedMomentumSGD(lr=0.1).setup(link)
    cr.serializers.load_npz(str(tmp_path / "s.npz"), ref)
    g = {"W": np.full((2, 3), 0.5, np.float32), "b": np.full(2, -0.25, np.float32)}
    link.l1.W.grad, link.l1.b.grad = g["W"].copy(), g["b"].copy()
    ref.update()
    net.l1.weight.grad, net.l1.bias.grad = torch.from_numpy(g["W"].copy()), torch.from_numpy(g["b"].copy())
    opt.fused = False
    opt.step()
    np.testing.assert_array_equal(net.l1.weight.detach().numpy(), link.l1.W.array)
    np.testing.assert_array_equal(net.l1.bias.detach().numpy(), link.l1.b.array)


def test_failed_load_changes_nothing(tmp_path):
    _net, opt = trained()
    crt.save_chainer_snapshot(tmp_path / "s.npz", opt)
    snap = chainer_layout.read_optimizer_npz(tmp_path / "s.npz")
    snap.params["l1/b"].state["v"] = np.zeros(5, np.float32)  # wrong shape, after a good l1/W
    snap.t = 99
    chainer_layout.write_optimizer_npz(tmp_path / "bad.npz", snap)
    _, fresh = trained(seed=4, steps=1)
    before = {k: v.clone() for k, v in fresh.state[fresh.param_groups[0]["params"][0]].items() if k == "v"}
    with pytest.raises(ValueError, match=r"bad.npz.*'l1/b/v': snapshot has shape \(5,\), expected \(2,\)"):
        crt.load_chainer_snapshot(fresh, tmp_path / "bad.npz")
    assert fresh.t == 1
    assert torch.equal(fresh.state[fresh.param_groups[0]["params"][0]]["v"], before["v"])


def test_strictness_names_and_unnamed_optimizers(tmp_path):
    net, opt = trained()
    crt.save_chainer_snapshot(tmp_path / "s.npz", opt)
    snap = chainer_layout.read_optimizer_npz(tmp_path / "s.npz")
    del snap.params["l1/b"].state["v"]
    chainer_layout.write_optimizer_npz(tmp_path / "partial.npz", snap)
    _, fresh = trained(steps=0)
    with pytest.raises(KeyError, match="l1/b/v"):
        crt.load_chainer_snapshot(fresh, tmp_path / "partial.npz")
    crt.load_chainer_snapshot(fresh, tmp_path / "partial.npz", strict=False)
    bias = fresh.param_groups[0]["params"][1]
    assert fresh.state[bias] == {"t": 2}
    unnamed = crt.CorrectedMomentumSGD(net.parameters())
    with pytest.raises(ValueError, match="no names"):
        crt.load_chainer_snapshot(unnamed, tmp_path / "s.npz")
    crt.load_chainer_snapshot(unnamed, tmp_path / "s.npz", module=net)
    assert unnamed.t == 2
    renamed = {"enc/W": "l1.weight", "enc/b": "l1.bias"}
    with pytest.raises(KeyError, match="enc/W/t"):
        crt.load_chainer_snapshot(unnamed, tmp_path / "s.npz", names=renamed, module=net)
    with pytest.raises(KeyError, match="does not hold"):
        crt.load_chainer_snapshot(unnamed, tmp_path / "s.npz", names={"l1/W": "l9.weight"}, module=net)


def test_layout_reader_prefix_and_pickles(tmp_path):
    np.savez(
        tmp_path / "t.npz",
        **{
            "updater/optimizer:main/t": 3,
            "updater/optimizer:main/epoch": 1,
            "updater/optimizer:main/W/t": 3,
            "updater/optimizer:main/W/v": np.ones(2),
            "updater/iteration": 3,
        },
    )
    snap = chainer_layout.read_optimizer_npz(tmp_path / "t.npz", path="updater/optimizer:main/")
    assert (snap.t, snap.epoch, list(snap.params), snap.params["W"].t) == (3, 1, ["W"], 3)
    with pytest.raises(KeyError, match="prefix"):
        chainer_layout.read_optimizer_npz(tmp_path / "t.npz")
    np.savez(tmp_path / "p.npz", t=np.array([object()], dtype=object), epoch=0)
    with pytest.raises(ValueError):
        chainer_layout.read_optimizer_npz(tmp_path / "p.npz")


class OddTiming:
    timing = "sometime"

    def __init__(self, seen):
        self.seen = seen

    def __call__(self, optimizer, param):
        self.seen.append(("b", param.tolist()))


def test_parameter_hooks_run_inside_the_update_on_unscaled_gradients():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = crt.CorrectedMomentumSGD([a, b], lr=1.0, momentum=0.0, fused=False)
    seen = []

    def record(tag):
        def hook(o, p):
            seen.append((tag, p.grad.tolist(), p.tolist()))

        return hook

    opt.add_param_hook(a, record("a-pre"), name="a-pre", timing="pre")
    opt.add_param_hook(a, record("a-post"), name="a-post", timing="post")
    with pytest.warns(UserWarning, match="post"):
        opt.add_param_hook(b, OddTiming(seen), name="b")
    with pytest.raises(KeyError):
        opt.add_param_hook(torch.zeros(1), record("x"), name="x")
    a.grad, b.grad = torch.tensor([8.0, 16.0]), torch.tensor([4.0])
    opt.step(loss_scale=4.0)
    assert seen == [("a-pre", [2.0, 4.0], [0.0, 0.0]), ("a-post", [2.0, 4.0], [-2.0, -4.0]), ("b", [-1.0])]
    opt.remove_param_hook(a, "a-pre")
    with pytest.raises(KeyError):
        opt.remove_param_hook(a, "a-pre")


def test_parameter_hooks_of_a_float16_parameter_see_the_float32_master():
    w = torch.nn.Parameter(torch.ones(2, dtype=torch.float16))
    opt = crt.CorrectedMomentumSGD([w], lr=1e-4, fp32_master=True)
    dtypes = []
    opt.add_param_hook(w, lambda o, p: dtypes.append((p.dtype, p.grad.dtype)), name="d")
    w.grad = torch.ones(2, dtype=torch.float16)
    opt.step()
    assert dtypes == [(torch.float32, torch.float32)]


def test_sparse_gradient_is_refused_before_anything_changes():
    net = torch.nn.Embedding(4, 2, sparse=True)
    extra = torch.nn.Parameter(torch.zeros(1))
    opt = crt.CorrectedMomentumSGD([("extra", extra), *net.named_parameters()], lr=0.1)
    net(torch.tensor([1])).sum().backward()
    with pytest.raises(TypeError, match="weight has a sparse gradient"):
        opt.step()
    assert extra.grad is None and opt.t == 0


def test_a_pre_hook_that_changes_lr_acts_on_this_step():
    """Chainer reads the rule's hyperparameters inside the update, after the pre hooks."""
    w = torch.nn.Parameter(torch.zeros(1))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.0, fused=False)

    def halve_lr(o):
        o.param_groups[0]["lr"] = 0.5

    opt.add_hook(halve_lr)
    w.grad = torch.tensor([1.0])
    opt.step()
    assert w.item() == -0.5


def test_non_strict_load_keeps_what_the_snapshot_lacks(tmp_path):
    """As Chainer's non-strict deserializer: a missing key leaves the current value."""
    _net, opt = trained()
    crt.save_chainer_snapshot(tmp_path / "s.npz", opt)
    snap = chainer_layout.read_optimizer_npz(tmp_path / "s.npz")
    del snap.params["l1/b"]
    del snap.params["l1/W"].state["v"]
    snap.params["l1/W"].t = 7
    chainer_layout.write_optimizer_npz(tmp_path / "partial.npz", snap)
    weight, bias = opt.param_groups[0]["params"]
    kept = {k: v.clone() for k, v in ((0, opt.state[weight]["v"]), (1, opt.state[bias]["v"]))}
    crt.load_chainer_snapshot(opt, tmp_path / "partial.npz", strict=False)
    assert opt.state[weight]["t"] == 7 and torch.equal(opt.state[weight]["v"], kept[0])
    assert opt.state[bias]["t"] == 2 and torch.equal(opt.state[bias]["v"], kept[1])


def test_loss_scale_moves_between_the_reference_and_torch(tmp_path):
    """The reference's ``loss_scaling.*`` keys load into a LossScaler, and a LossScaler's load into the reference."""
    w = cr.Parameter(np.zeros(2, np.float32))
    ref = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(w=w))
    ref.loss_scaling(interval=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in ([1.0, 1.0], [1.0, np.inf], [1.0, 1.0]):
            ref.update(lambda g=g: cr.ScriptedLoss({w: np.array(g, np.float32)}))
    cr.serializers.save_npz(str(tmp_path / "ref.npz"), ref)
    net = torch.nn.Module()
    net.w = torch.nn.Parameter(torch.zeros(2))
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
    scaler = crt.LossScaler()
    assert crt.load_chainer_snapshot(opt, tmp_path / "ref.npz", scaler=scaler)
    assert scaler.state_dict() == {
        "scale": ref.loss_scale,
        "dynamic": True,
        "interval": 3,
        "nonfinite_ever": True,
    }
    assert ref.loss_scale == 2 ** (1 / 3)
    scaler.load_state_dict({**scaler.state_dict(), "scale": 8.0})
    crt.save_chainer_snapshot(tmp_path / "torch.npz", opt, scaler=scaler)
    cr.serializers.load_npz(str(tmp_path / "torch.npz"), ref)
    assert ref.loss_scale == 8.0 and ref.t == 3


def test_weight_decay_as_a_parameter_hook_sees_chainers_loss_scale():
    """Chainer's rule hooks run after unscaling, yet param._loss_scale is still set (WeightDecay
    multiplies by it); a float32 master carries none."""
    for dtype, master, want in (
        (torch.float32, False, 1.0 - (0.5 + 0.25 * 4)),
        (torch.float16, True, 1.0 - 0.75),
    ):
        w = torch.nn.Parameter(torch.ones(1, dtype=dtype))
        opt = crt.CorrectedMomentumSGD([w], lr=1.0, momentum=0.0, fused=False, fp32_master=master)
        opt.add_param_hook(w, crt.WeightDecay(0.25))
        w.grad = torch.tensor([0.5 * 4], dtype=dtype)
        opt.step(loss_scale=4.0)
        assert w.item() == want, dtype


# -- the three steps (issue 22) ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_ops_round_as_their_single_tensor_twins(dtype):
    """The multi-tensor step is bitwise the single-tensor step only if each eager ``_foreach_*``
    operation rounds as its single-tensor twin: asked of PyTorch directly, large and small tensors."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(7,), (1000,), (1 << 18,), ()]
    vs = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    gs = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    lr, m, scale = 0.0123, 0.9, 3.3
    pairs = {
        "mul by m": (torch._foreach_mul(vs, m), [v.mul(m) for v in vs]),
        "sub g": (torch._foreach_sub(vs, gs), [v.sub(g) for v, g in zip(vs, gs, strict=True)]),
        "mul by lr": (torch._foreach_mul(vs, lr), [v.mul(lr) for v in vs]),
        "div by scale": (torch._foreach_div(gs, scale), [g.div(scale) for g in gs]),
        "add": (torch._foreach_add(vs, gs), [v.add(g) for v, g in zip(vs, gs, strict=True)]),
    }
    for what, (multi, single) in pairs.items():
        assert all(torch.equal(a, b) for a, b in zip(multi, single, strict=True)), what


@pytest.mark.parametrize("cls", [crt.CorrectedMomentumSGD, crt.MomentumSGD])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_step_is_bitwise_the_single_tensor_step(cls, dtype):
    """fused=False: foreach=True (torch._foreach_*) and foreach=False (tensor by tensor, a large
    tensor in blocks) give the same bits, with and without a loss scale that is no power of two."""
    shapes = {"a": (3, 4), "b": (5,), "c": (1 << 18) + 3}
    gen = torch.Generator().manual_seed(0)
    init = {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in shapes.items()}
    grads = [{k: torch.randn(s, generator=gen, dtype=dtype) * 3 for k, s in shapes.items()} for _ in range(4)]
    runs = []
    for foreach in (True, False):
        params = {k: torch.nn.Parameter(a.clone()) for k, a in init.items()}
        opt = cls(list(params.values()), lr=0.1, momentum=0.9, fused=False, foreach=foreach)
        for step, gs in enumerate(grads):
            for k, p in params.items():
                p.grad = gs[k].clone()
            opt.step(loss_scale=3.0 if step % 2 else None)
        runs.append(([p.detach() for p in params.values()], [opt.state[p]["v"] for p in params.values()]))
    (pa, va), (pb, vb) = runs
    assert all(torch.equal(a, b) for a, b in zip(pa + va, pb + vb, strict=True))


def test_fused_and_foreach_together_are_refused():
    with pytest.raises(RuntimeError, match="fused=True and foreach=True"):
        crt.CorrectedMomentumSGD([torch.nn.Parameter(torch.zeros(2))], fused=True, foreach=True)


def test_fused_refuses_a_parameter_the_kernel_cannot_take_naming_it():
    """fused=True with a float16 parameter: refused (as torch.optim.SGD refuses what its kernel
    cannot take), not stepped by another path; with fp32_master its float32 master is fused."""
    half = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))
    with pytest.raises(
        RuntimeError, match=r"fused=True takes float32 and float64.*parameter half is torch.float16"
    ):
        crt.CorrectedMomentumSGD([("half", half)], fused=True)
    opt = crt.CorrectedMomentumSGD([torch.nn.Parameter(torch.zeros(2))], fused=True)
    with pytest.raises(RuntimeError, match="fused=True takes"):
        opt.add_param_group({"params": [half]})
    assert len(opt.param_groups) == 1
    crt.CorrectedMomentumSGD([half], fused=True, fp32_master=True)  # taken: the master is float32
    crt.CorrectedMomentumSGD([half])  # the default steps it without the kernel


def test_fused_refuses_a_parameter_made_float16_later_before_anything_changes():
    w = torch.nn.Parameter(torch.ones(2))
    opt = crt.CorrectedMomentumSGD([w], lr=1.0, fused=True)
    w.data = w.data.half()
    w.grad = torch.ones(2, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="fused=True takes"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(2, dtype=torch.float16)) and opt.t == 0


def test_fused_step_with_a_non_contiguous_gradient_is_the_single_tensor_step():
    """The kernel walks p, g and v alike: a transposed gradient beside a contiguous parameter takes
    the single-tensor step, bitwise fused=False (the kernel on the mixed layouts computes other numbers)."""
    gen = torch.Generator().manual_seed(1)
    init, grad, other = (torch.randn(6, 6, generator=gen) for _ in range(3))
    results = []
    for fused in (True, False):
        w, u = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
        opt = crt.CorrectedMomentumSGD([w, u], lr=0.1, momentum=0.9, fused=fused)
        for _ in range(3):
            w.grad, u.grad = grad.clone().t(), other.clone()
            opt.step()
        results.append((w.detach().clone(), u.detach().clone()))
    assert torch.equal(results[0][0], results[1][0])  # u: the fused kernel, within a rounding
    torch.testing.assert_close(results[0][1], results[1][1], rtol=4 * EPS32, atol=4 * EPS32)


def test_fused_step_under_a_scale_divides_as_chainer():
    """With a loss scale that is no power of two, the fused step leaves each gradient divided by
    the scale exactly as ``g / scale`` (Chainer's division, not a product with the reciprocal)
    and steps as the fused kernel on that quotient."""
    gen = torch.Generator().manual_seed(2)
    init, grad = torch.randn(1000, generator=gen), torch.randn(1000, generator=gen) * 1000
    scale = 2.0 ** (5 / 1000) * 64  # a dynamic scale after its first overflow
    w = torch.nn.Parameter(init.clone())
    opt = crt.CorrectedMomentumSGD([w], lr=0.1, momentum=0.9, fused=True)
    w.grad = grad.clone()
    opt.step()  # creates v (the first step divides in its preamble)
    v_before = opt.state[w]["v"].clone()
    p_before = w.detach().clone()
    w.grad = grad.clone()
    opt.step(loss_scale=scale)
    quotient = grad / scale
    assert torch.equal(w.grad, quotient)
    assert not torch.equal(quotient, grad * (1 / scale))  # the case tells division from the product
    p, v = p_before.clone(), v_before.clone()
    torch._fused_sgd_(
        [p], [quotient.clone()], [v], weight_decay=0.0, momentum=0.9, lr=-0.1, dampening=0.0,
        nesterov=False, maximize=True, is_first_step=False,
    )  # fmt: skip
    assert torch.equal(w.detach(), p) and torch.equal(opt.state[w]["v"], v)


def test_fused_step_is_the_kernel_with_maximize_bit_for_bit():
    """The fused step asks the kernel for b <- m b + (1 - 2) g (dampening 2, faster on the CPU):
    the same bits as the form with maximize=True (-g), signed zeros and infinities included, with
    and without a scale; NaN where it has NaN (whose sign may differ: -g flips a NaN's sign, the
    product with -1 keeps it on x86, as Chainer's v - g does)."""
    gen = torch.Generator().manual_seed(4)
    for dtype in (torch.float32, torch.float64):
        init, grad, buf = (torch.randn(1000, generator=gen, dtype=dtype) for _ in range(3))
        grad[:4] = torch.tensor([float("inf"), float("nan"), -0.0, 0.0], dtype=dtype)
        buf[4:6] = torch.tensor([float("nan"), -0.0], dtype=dtype)
        for scale in (None, 3.3):
            w = torch.nn.Parameter(init.clone())
            opt = crt.CorrectedMomentumSGD([w], lr=0.1, momentum=0.9, fused=True)
            w.grad = grad.clone()
            opt.step()
            opt.state[w]["v"].copy_(buf)
            w.grad = grad.clone()
            p, v, g = w.detach().clone(), buf.clone(), grad.clone()
            opt.step(loss_scale=scale)
            if scale is not None:
                g /= scale
            torch._fused_sgd_(
                [p], [g], [v], weight_decay=0.0, momentum=0.9, lr=-0.1, dampening=0.0,
                nesterov=False, maximize=True, is_first_step=False,
            )  # fmt: skip
            bits = torch.int32 if dtype == torch.float32 else torch.int64
            for got, want in ((w.detach(), p), (opt.state[w]["v"], v)):
                assert torch.equal(got.isnan(), want.isnan())
                number = ~want.isnan()
                assert torch.equal(got[number].view(bits), want[number].view(bits))
