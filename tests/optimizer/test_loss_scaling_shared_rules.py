"""One loss-scaling object (corrmom_ref.loss_scaling.LossScaling) behind the reference, the torch
LossScaler and the optax wrapper: the same rules, the same messages, the same snapshot reader.

Expected scales come from Chainer's rule written out (halve on an overflow, double before the
first one, 2**(1/interval) after it, within [1, 65504]); expected errors from the reference's
documented messages (``docs/reliability.md``).
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref.loss_scaling import (
    KEYS,
    ClippingUnderLossScalingWarning,
    LossScaling,
    check_interval_argument,
    check_scale_argument,
)
from corrmom_ref.serializers import chainer_layout

# -- the object ------------------------------------------------------------------------


def test_the_object_follows_chainers_rule_step_by_step() -> None:
    """1 -> 2 -> 4 (clean), halve on an overflow, then sqrt(2) per clean step with interval 2."""
    state = LossScaling()
    state.configure(interval=2)
    seen = []
    for overflow in (False, False, True, False, False):
        state.record(overflow)
        state.advance()
        seen.append(state.scale)
    root2 = math.pow(2.0, 0.5)
    assert seen == [2.0, 4.0, 2.0, 2.0 * root2, 2.0 * root2 * root2]
    assert state.nonfinite_ever and not state.nonfinite_now


def test_static_after_dynamic_keeps_the_dynamic_flag_and_history_and_warns() -> None:
    """Chainer's quirk: the static value keeps moving (docs/quirks.md row 5)."""
    state = LossScaling()
    state.configure(interval=4)
    state.record(True)
    with pytest.warns(UserWarning, match="dynamic policy stays on"):
        state.configure(scale=64.0)
    assert (state.dynamic, state.scale, state.interval, state.nonfinite_ever) == (True, 64.0, 4, True)
    state.record(True)
    state.advance()
    assert state.scale == 32.0


def test_static_first_has_no_interval_and_saves_none() -> None:
    state = LossScaling()
    state.configure(scale=np.float32(8))
    assert state.snapshot_entries() == {
        KEYS["dynamic"]: False,
        KEYS["nonfinite_ever"]: False,
        KEYS["scale"]: np.float32(8),
    }
    assert type(state.snapshot_entries()[KEYS["scale"]]) is np.float32


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_interval_argument, 1.5, r"^interval: expected an integer, got 1\.5 \(float\)$"),
        (check_interval_argument, True, r"^interval: expected an integer, got True \(bool\)$"),
        (check_interval_argument, 0, r"^interval: must be an integer in \[1, 2\*\*63 - 1\], got 0$"),
        (check_scale_argument, math.inf, r"^loss scale: a loss scale must be finite and in .*got inf$"),
        (check_scale_argument, math.nan, r"^loss scale: a loss scale must be finite and in .*got nan$"),
        (check_scale_argument, "2", r"^loss scale: expected a real number, got '2' \(str\)$"),
        (check_scale_argument, True, r"^loss scale: expected a real number, got True \(bool\)$"),
    ],
)
def test_shared_validators_raise_the_references_messages(check, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        check(value)
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    kwargs = {"interval": value} if check is check_interval_argument else {"scale": value}
    with pytest.raises(ValueError, match=message):
        opt.loss_scaling(**kwargs)


def test_optimizer_keeps_no_private_loss_scaling_attributes() -> None:
    """The state lives in one LossScaling; loading restores it without writing private names."""
    names = {name for cls in cr.CorrectedMomentumSGD.__mro__ for name in vars(cls)}
    assert not {name for name in names if name.startswith("_loss_scaling_")}
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    opt.loss_scaling(interval=3)
    opt.update(lambda: cr.ScriptedLoss({opt.target.W: np.ones(2, np.float32)}))
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, opt)
    other = cr.CorrectedMomentumSGD().setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    cr.serializers.load_npz(io.BytesIO(buffer.getvalue()), other)
    assert not [
        name for name in vars(other) if name.startswith("_loss_scal") and name != "_loss_scaling_state"
    ]
    assert isinstance(other._loss_scaling, LossScaling)
    assert (other.loss_scale, other.dynamic_loss_scaling, other._loss_scaling.interval) == (2.0, True, 3)


# -- snapshots: a partial set of keys (item 9) and values (item 8) ----------------------


def _dynamic_snapshot() -> dict[str, np.ndarray]:
    """A reference snapshot of a dynamic scale after an overflow, as its npz members."""
    W = cr.Parameter(np.zeros(2, np.float32))
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=W))
    opt.loss_scaling(interval=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in ([1.0, 1.0], [1.0, np.inf]):
            opt.update(lambda g=g: cr.ScriptedLoss({W: np.array(g, np.float32)}))
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, opt)
    with np.load(io.BytesIO(buffer.getvalue())) as stored:
        return {key: stored[key] for key in stored.files}


def _npz(members: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


@pytest.mark.parametrize("missing", sorted(KEYS.values()))
def test_reference_refuses_a_partial_set_of_loss_scaling_keys_naming_the_missing_one(missing) -> None:
    members = _dynamic_snapshot()
    del members[missing]
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    opt.loss_scaling(scale=16.0)
    with pytest.raises(KeyError, match=f"'{missing}' is missing"):
        cr.serializers.load_npz(io.BytesIO(_npz(members)), opt)
    assert (opt.t, opt.loss_scale, opt.dynamic_loss_scaling) == (0, 16.0, False)


def test_a_snapshot_without_loss_scaling_keys_keeps_the_current_configuration() -> None:
    members = {k: v for k, v in _dynamic_snapshot().items() if not k.startswith("loss_scaling.")}
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    opt.loss_scaling(scale=16.0)
    cr.serializers.load_npz(io.BytesIO(_npz(members)), opt)
    assert (opt.t, opt.loss_scale, opt.dynamic_loss_scaling) == (2, 16.0, False)


BAD_VALUES = [
    pytest.param("loss_scaling.dynamic", np.float64(0.0), TypeError, "expected a bool", id="dynamic-0.0"),
    pytest.param(
        "loss_scaling.interval", np.uint64(2**64 - 1), ValueError, r"2\*\*63 - 1", id="interval-2**64-1"
    ),
    pytest.param(
        "loss_scaling.interval", np.float64(3.0), TypeError, "expected an integer", id="interval-3.0"
    ),
    pytest.param(
        "loss_scaling.scale",
        np.datetime64(4, "s"),
        TypeError,
        "expected a (bool or a )?real number",
        id="dt64",
    ),
    pytest.param("loss_scaling.scale", np.str_("2.0"), TypeError, "real number", id="scale-str"),
    pytest.param("loss_scaling.scale", np.complex128(2.0), TypeError, "real number", id="scale-complex"),
    pytest.param("loss_scaling.scale", np.float64(1e-300), ValueError, r"\[2\*\*-126", id="scale-1e-300"),
    pytest.param("loss_scaling.scale", np.float64(np.inf), ValueError, r"\[2\*\*-126", id="scale-inf"),
    pytest.param("loss_scaling.nonfinite_ever", np.int32(1), TypeError, "expected a bool", id="ever-int"),
]


@pytest.mark.parametrize(("key", "value", "error", "match"), BAD_VALUES)
def test_chainer_layout_reader_refuses_bad_values_naming_the_key(key, value, error, match) -> None:
    """The ports' reader (chainer_layout) holds the loss-scaling keys to the reference's rule: a value
    that is not a real scalar is refused as the file is read, the others by read_loss_scaling."""
    members = _dynamic_snapshot()
    members[key] = np.asarray(value)
    with pytest.raises(error, match=match) as caught:
        snapshot = chainer_layout.read_optimizer_npz(io.BytesIO(_npz(members)))
        chainer_layout.read_loss_scaling(snapshot, "updater/")
    assert f"'updater/{key}'" in str(caught.value) or f"'{key}'" in str(caught.value)


@pytest.mark.parametrize("missing", sorted(KEYS.values()))
def test_chainer_layout_reader_refuses_a_partial_set(missing) -> None:
    members = _dynamic_snapshot()
    del members[missing]
    snapshot = chainer_layout.read_optimizer_npz(io.BytesIO(_npz(members)))
    with pytest.raises(KeyError, match=f"'{missing}' is missing"):
        chainer_layout.read_loss_scaling(snapshot)


def test_chainer_layout_round_trip_of_the_entries() -> None:
    entries = chainer_layout.loss_scaling_entries(scale=0.5, dynamic=False, interval=7, nonfinite_ever=True)
    snapshot = chainer_layout.OptimizerSnapshot(0, 0, {}, entries)
    assert chainer_layout.read_loss_scaling(snapshot) == {
        "scale": 0.5,
        "dynamic": False,
        "interval": 7,
        "nonfinite_ever": True,
    }


# -- clipping under dynamic loss scaling (item 5) ------------------------------------------


def test_reference_warns_once_when_gradient_clipping_meets_dynamic_scaling() -> None:
    W = cr.Parameter(np.zeros(2, np.float32))
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=W))
    opt.add_hook(cr.optimizer_hooks.GradientClipping(1.0))
    opt.loss_scaling(interval=1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            opt.update(lambda: cr.ScriptedLoss({W: np.ones(2, np.float32)}))
    found = [w for w in caught if issubclass(w.category, ClippingUnderLossScalingWarning)]
    assert len(found) == 1
    assert found[0].filename == __file__  # attributed to the caller of update()
    message = str(found[0].message)
    assert (
        "threshold 1.0 on the scaled norm is 1.0 on the true gradient norm at the current scale 1.0"
        in message
    )
    assert "GradientClipping(threshold * o.loss_scale)" in message  # the recipe


def test_hard_clipping_under_dynamic_scaling_warns_with_its_effective_bounds() -> None:
    W = cr.Parameter(np.zeros(2, np.float32))
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=W))
    opt.loss_scaling()
    opt.update(lambda: cr.ScriptedLoss({W: np.ones(2, np.float32)}))  # scale 1 -> 2
    opt.add_hook(cr.optimizer_hooks.GradientHardClipping(-2.0, 4.0))
    with pytest.warns(ClippingUnderLossScalingWarning) as caught:
        opt.update(lambda: cr.ScriptedLoss({W: np.ones(2, np.float32)}))
    assert (
        "bounds [-2.0, 4.0] on the scaled gradients are [-1.0, 2.0] on the true gradients at the current scale 2.0"
        in str(caught[0].message)
    )


def test_reference_does_not_warn_under_static_scaling_or_without_clipping() -> None:
    W = cr.Parameter(np.zeros(2, np.float32))
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=W))
    opt.add_hook(cr.optimizer_hooks.GradientClipping(1.0))
    opt.loss_scaling(scale=8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.update(lambda: cr.ScriptedLoss({W: np.ones(2, np.float32)}))


# -- the two clipping recipes of docs/porting.md, in the three implementations --------------

TAU, LR, MOMENTUM, STEPS = 1.0, 0.1, 0.9, 4
SHAPES = {"W": (3, 2), "b": (2,)}


def _clipping_problem() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(20)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [
        {k: (3 * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()} for _ in range(STEPS)
    ]
    return params, grads


def _expected(true_norm: bool) -> list[dict[str, np.ndarray]]:
    """Clipping then Chainer's corrected momentum, in float64 maths. The dynamic scale is
    2**k at step k (no overflow). ``true_norm``: clip ||g|| at tau; else clip the scaled
    norm s||g|| at tau, as Chainer's GradientClipping hook does."""
    params, grads = _clipping_problem()
    p = {k: v.astype(np.float64) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    out = []
    for step, g in enumerate(grads):
        scale = 2.0**step
        norm = math.sqrt(sum(float(np.sum(x.astype(np.float64) ** 2)) for x in g.values()))
        seen = norm if true_norm else scale * norm
        factor = min(1.0, TAU / seen)
        for k in p:
            v[k] = MOMENTUM * v[k] - g[k].astype(np.float64) * factor
            p[k] = p[k] + LR * v[k]
        out.append({k: x.copy() for k, x in p.items()})
    return out


def _reference_run(hook) -> list[dict[str, np.ndarray]]:
    params, grads = _clipping_problem()
    link = cr.Link(**{k: cr.Parameter(v.copy()) for k, v in params.items()})
    opt = cr.CorrectedMomentumSGD(lr=LR, momentum=MOMENTUM).setup(link)
    opt.add_hook(hook, name="clip")
    opt.loss_scaling()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingUnderLossScalingWarning)
        for g in grads:
            opt.update(lambda g=g: cr.ScriptedLoss({getattr(link, k): g[k] for k in SHAPES}))
            out.append({k: np.array(getattr(link, k).array) for k in SHAPES})
    return out


def _torch_run(chainers_hook: bool) -> list[dict[str, np.ndarray]]:
    torch = pytest.importorskip("torch")
    import corrmom_ref.torch as crt

    params, grads = _clipping_problem()
    tensors = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    opt = crt.CorrectedMomentumSGD(list(tensors.items()), lr=LR, momentum=MOMENTUM)
    scaler = crt.LossScaler()
    if chainers_hook:
        opt.add_hook(crt.GradientClipping(TAU))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingUnderLossScalingWarning)
        for g in grads:
            for k, p in tensors.items():
                p.grad = torch.tensor(g[k]) * scaler.get_scale()  # what scaler.scale(loss).backward() gives
            if not chainers_hook:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(list(tensors.values()), TAU)
            scaler.step(opt)
            scaler.update()
            out.append({k: p.detach().numpy().copy() for k, p in tensors.items()})
    return out


def _optax_run(clip_inside: bool) -> list[dict[str, np.ndarray]]:
    pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    import corrmom_ref.optax as co

    params, grads = _clipping_problem()
    clip = optax.clip_by_global_norm(TAU)
    inner = co.corrected_momentum_sgd(LR, MOMENTUM)
    if clip_inside:
        tx = co.loss_scaling(optax.chain(clip, inner))
    else:
        tx = optax.chain(clip, co.loss_scaling(inner))
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = tx.init(p)
    out = []
    for g in grads:
        scale = co.loss_scale(state)
        updates, state = tx.update(
            {k: jnp.asarray(v) * scale.astype(v.dtype) for k, v in g.items()}, state, p
        )
        p = optax.apply_updates(p, updates)
        out.append({k: np.asarray(v) for k, v in p.items()})
    return out


#: float32 runs against float64 maths: a few roundings per step (and torch's clip_grad_norm_
#: divides by the norm plus 1e-6), far below the differences between the two recipes.
RTOL, ATOL = 2e-6, 2e-6


def _assert_close(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> None:
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        for k in SHAPES:
            np.testing.assert_allclose(g[k], w[k], rtol=RTOL, atol=ATOL, err_msg=f"step {step}, {k}")


def test_the_recipes_clip_different_norms() -> None:
    """The two recipes really differ on this problem (else the tests below could not tell them apart)."""
    true, scaled = _expected(True), _expected(False)
    assert np.max(np.abs(true[-1]["W"] - scaled[-1]["W"])) > 100 * ATOL


@pytest.mark.parametrize("impl", ["reference", "torch", "optax"])
def test_clipping_the_true_norm_under_dynamic_scaling(impl) -> None:
    """docs/porting.md 'Clipping under loss scaling': the reference's pre hook at tau * loss_scale,
    torch's unscale_ then clip_grad_norm_, optax's clip_by_global_norm inside loss_scaling."""
    from corrmom_ref.optimizer_hooks import GradientClipping

    runs = {
        "reference": lambda: _reference_run(lambda o: GradientClipping(TAU * o.loss_scale)(o)),
        "torch": lambda: _torch_run(chainers_hook=False),
        "optax": lambda: _optax_run(clip_inside=True),
    }
    _assert_close(runs[impl](), _expected(True))


@pytest.mark.parametrize("impl", ["reference", "torch", "optax"])
def test_chainers_clipping_of_the_scaled_norm_under_dynamic_scaling(impl) -> None:
    """Chainer's numbers: the GradientClipping hook (reference, torch), optax's
    clip_by_global_norm chained before loss_scaling."""
    from corrmom_ref.optimizer_hooks import GradientClipping

    runs = {
        "reference": lambda: _reference_run(GradientClipping(TAU)),
        "torch": lambda: _torch_run(chainers_hook=True),
        "optax": lambda: _optax_run(clip_inside=False),
    }
    _assert_close(runs[impl](), _expected(False))


def test_torch_scaler_warns_once_for_a_clipping_hook_and_not_after_unscale() -> None:
    torch = pytest.importorskip("torch")
    import corrmom_ref.torch as crt

    w = torch.nn.Parameter(torch.zeros(2))
    opt = crt.CorrectedMomentumSGD([("w", w)], lr=0.1)
    opt.add_hook(crt.GradientClipping(0.5))
    scaler = crt.LossScaler()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # unscaled first: the hook sees true gradients, nothing to warn about
            w.grad = torch.ones(2) * scaler.get_scale()
            scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()
        for _ in range(3):
            w.grad = torch.ones(2) * scaler.get_scale()
            scaler.step(opt)
            scaler.update()
    found = [c for c in caught if issubclass(c.category, ClippingUnderLossScalingWarning)]
    assert len(found) == 1
    assert found[0].filename == __file__
    message = str(found[0].message)
    assert (
        "threshold 0.5 on the scaled norm is 0.125 on the true gradient norm at the current scale 4.0"
        in message
    )
    assert "scaler.unscale_(optimizer)" in message and "clip_grad_norm_" in message
