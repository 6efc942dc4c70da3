"""corrmom_ref.optax: the transformations against the reference on NumPy, loss scaling, snapshots, errors.

The reference on NumPy is bitwise Chainer (tests/chainer_agreement/test_recorded_scenarios.py);
the transformation run op by op (eager JAX, nothing fused) must equal it
bitwise. ``tests/optax_port/test_chainer_training_run.py`` checks against real Chainer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import corrmom_ref as cr  # noqa: E402
import corrmom_ref.optax as co  # noqa: E402
from corrmom_ref.loss_scaling import NonFiniteGradientWarning  # noqa: E402

jax.config.update("jax_enable_x64", True)

SHAPES = {"W": (3, 2), "b": (2,)}
LRS = [0.1, 0.2, 0.05, 0.05, 0.3, 0.01]


def problem(seed: int = 0, dtype=np.float32) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in LRS]
    return params, grads


def reference_run(cls, params: dict, grads: list[dict], momentum: float = 0.9) -> list[dict]:
    """The reference optimizer on NumPy, ``lr`` set from ``LRS`` before each step."""
    link = cr.Link(**{k: cr.Parameter(v.copy()) for k, v in params.items()})
    opt = cls(lr=LRS[0], momentum=momentum).setup(link)
    out = []
    for lr, g in zip(LRS, grads, strict=True):
        opt.lr = lr
        for k, p in link.namedparams():
            p.grad = g[k.lstrip("/")].copy()
        opt.update()
        out.append({k.lstrip("/"): np.array(p.array) for k, p in link.namedparams()})
    return out


def schedule(count):
    return jnp.asarray(LRS)[count]


def optax_run(tx, params: dict, grads: list[dict]) -> tuple[list[dict], object]:
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = tx.init(p)
    out = []
    for g in grads:
        updates, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = optax.apply_updates(p, updates)
        out.append({k: np.asarray(v) for k, v in p.items()})
    return out, state


def assert_equal_runs(got: list[dict], want: list[dict]) -> None:
    for t, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        for k in b:
            assert a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} after step {t}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_corrected_is_the_reference_bitwise(dtype) -> None:
    params, grads = problem(1, dtype)
    got, state = optax_run(co.corrected_momentum_sgd(schedule, 0.9), params, grads)
    assert_equal_runs(got, reference_run(cr.CorrectedMomentumSGD, params, grads))
    assert int(state.count) == len(LRS)


def test_uncorrected_is_the_reference_bitwise() -> None:
    params, grads = problem(2)
    got, _ = optax_run(co.momentum_sgd(schedule, 0.9), params, grads)
    assert_equal_runs(got, reference_run(cr.MomentumSGD, params, grads))


def test_corrected_and_uncorrected_differ_once_lr_changes() -> None:
    params, grads = problem(3)
    a, _ = optax_run(co.corrected_momentum_sgd(schedule, 0.9), params, grads)
    b, _ = optax_run(co.momentum_sgd(schedule, 0.9), params, grads)
    assert np.array_equal(a[0]["W"], b[0]["W"])  # lr constant so far: eq. (9) = eq. (10) up to rounding
    assert not np.allclose(a[-1]["W"], b[-1]["W"], rtol=1e-4)


def test_velocity_is_chainers_sign_and_optax_sgd_agrees_in_exact_arithmetic() -> None:
    """The state holds v = -u (optax's trace u); with dyadic values both are exact."""
    w0 = {"w": np.array([0.5, -0.25], np.float32)}
    gs = [{"w": np.array([1.0, 0.5], np.float32)}, {"w": np.array([-0.5, 2.0], np.float32)}]
    ours, state = optax_run(co.corrected_momentum_sgd(0.25, 0.5), w0, gs)
    theirs, their_state = optax_run(optax.sgd(0.25, 0.5), w0, gs)
    assert_equal_runs(ours, theirs)
    np.testing.assert_array_equal(np.asarray(state.velocity["w"]), -np.asarray(their_state[0].trace["w"]))


def test_schedule_sees_the_number_of_updates_applied() -> None:
    seen = []
    tx = co.corrected_momentum_sgd(lambda count: (seen.append(int(count)), 0.1)[1], 0.9)
    optax_run(tx, *problem(4))
    assert seen == list(range(len(LRS)))


def test_inject_hyperparams_changes_lr_between_steps() -> None:
    params, grads = problem(5)
    tx = optax.inject_hyperparams(co.corrected_momentum_sgd)(learning_rate=LRS[0], momentum=0.9)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = tx.init(p)
    got = []
    for lr, g in zip(LRS, grads, strict=True):
        state.hyperparams["learning_rate"] = jnp.asarray(lr)
        updates, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = optax.apply_updates(p, updates)
        got.append({k: np.asarray(v) for k, v in p.items()})
    assert_equal_runs(got, reference_run(cr.CorrectedMomentumSGD, params, grads))


def test_rejects_a_hyperparameter_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="learning_rate"):
        co.corrected_momentum_sgd("0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="momentum"):
        co.momentum_sgd(0.1, momentum=True)


# -- loss scaling ----------------------------------------------------------------------


def scales(tx, pattern: list[bool]) -> tuple[list[float], object]:
    p = {"w": jnp.zeros(2, jnp.float32)}
    state = tx.init(p)
    step = jax.jit(lambda g, s: tx.update(g, s, p))
    out = []
    for overflow in pattern:
        g = jnp.asarray([np.inf if overflow else 0.5, 1.0], jnp.float32) * co.loss_scale(state).astype(
            jnp.float32
        )
        _, state = step({"w": g}, state)
        out.append(float(co.loss_scale(state)))
    return out, state


def test_dynamic_scale_follows_chainers_rule_under_jit() -> None:
    pattern = [False] * 18 + [True] + [False] * 4 + [True, True]
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1), interval=2, warn=False)
    got, state = scales(tx, pattern)
    want, s, ever = [], 1.0, False
    for overflow in pattern:  # Chainer's update_loss_scale, written out
        factor = 0.5 if overflow else (2.0**0.5 if ever else 2.0)
        ever = ever or overflow
        s = max(1.0, min(65504.0, s * factor))
        want.append(s)
    assert got == want
    assert want[17] == 65504.0 and want[18] == 32752.0  # the cap, then a halving from it
    assert int(state.count) == len(pattern) and int(state.inner_state.count) == len(pattern) - 3


def test_skipped_step_changes_nothing_but_the_scale_and_t() -> None:
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1), interval=3, warn=False)
    p = {"w": jnp.asarray([1.0, 2.0], jnp.float32), "b": jnp.asarray([3.0], jnp.float32)}
    state = tx.init(p)
    updates, state = tx.update({"w": jnp.ones(2, jnp.float32), "b": jnp.ones(1, jnp.float32)}, state, p)
    p = optax.apply_updates(p, updates)
    before = state
    updates, state = tx.update(
        {"w": jnp.asarray([np.nan, 1.0], jnp.float32), "b": jnp.ones(1, jnp.float32)}, state, p
    )
    assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))
    assert jax.tree.all(
        jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), state.inner_state, before.inner_state)
    )
    assert int(state.count) == 2 and float(state.scale) == 1.0 and bool(state.nonfinite_ever)


def test_skipped_step_warns_naming_the_parameter() -> None:
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1))
    p = {"l1": {"W": jnp.ones(2, jnp.float32)}, "b": jnp.ones(1, jnp.float32)}
    g = {"l1": {"W": jnp.asarray([1.0, np.inf], jnp.float32)}, "b": jnp.ones(1, jnp.float32)}
    with pytest.warns(NonFiniteGradientWarning, match=r"param\.grad of /l1/W: ") as caught:
        jax.block_until_ready(jax.jit(tx.update)(g, tx.init(p), p))
    assert not any("/b" in str(w.message) for w in caught)
    (warning,) = [w.message for w in caught if isinstance(w.message, NonFiniteGradientWarning)]
    assert (warning.path, warning.iteration, warning.loss_scale) == ("/l1/W", 0, 1.0)


@pytest.mark.parametrize("jit", [False, True], ids=["op by op", "jitted"])
def test_finite_gradients_whose_sum_overflows_are_a_kept_step(jit) -> None:
    """The jitted check sums each gradient first (a non-finite element makes the sum
    non-finite); finite elements can overflow that sum too, and such a step is kept, without
    a warning, as Chainer keeps it: the exact check decides. The next step's NaN is skipped."""
    big = np.float32(3e38)
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1, 0.9))
    p = {"w": jnp.zeros(3, jnp.float32)}
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        updates, state = update({"w": jnp.asarray([big, big, big])}, state, p)
        jax.block_until_ready(updates)
    assert 3 * float(big) > float(np.finfo(np.float32).max)  # the sum overflows
    np.testing.assert_array_equal(np.asarray(updates["w"]), np.float32(0.1) * -np.asarray([big] * 3))
    assert float(co.loss_scale(state)) == 2.0 and not bool(state.nonfinite_ever)
    with pytest.warns(NonFiniteGradientWarning, match="/w"):
        updates, state = update({"w": jnp.asarray([1.0, np.nan, 1.0], jnp.float32)}, state, p)
        jax.block_until_ready(updates)
    assert float(co.loss_scale(state)) == 1.0 and bool(state.nonfinite_ever)


def test_the_warning_dynamic_step_has_no_jax_effect_so_jit_dispatches_it_in_cpp() -> None:
    """The warning's host callback (the default, warn=True) is a pure_callback whose result is
    the verdict: no JAX effect, so jax.jit keeps its C++ dispatch. A jax.debug.callback is an
    effect, which sends every call through Python dispatch (measured: 3.6x the unwrapped
    step on 1000 leaves of 1 Ki, against 1.5x without it); the warning itself is checked by
    test_skipped_step_warns_naming_the_parameter."""
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1, 0.9))
    p = {"w": jnp.ones(3, jnp.float32)}
    assert jax.make_jaxpr(tx.update)(p, tx.init(p), p).effects == set()


@pytest.mark.parametrize("make", [co.corrected_momentum_sgd, co.momentum_sgd])
def test_skipping_our_own_transformation_equals_the_generic_selects(make) -> None:
    """loss_scaling skips a step of corrected_momentum_sgd / momentum_sgd with selects written on
    the buffer (so XLA steps it in place); optax.chain hides the transformation, so the same
    steps go through the generic selects over the inner results: both agree bitwise, jitted
    and op by op, skipped steps (an inf, a NaN) included."""
    params, grads = problem(3)
    grads = [{k: v * np.float32(3.0) for k, v in g.items()} for g in grads]
    grads[1]["W"] = grads[1]["W"].copy()
    grads[1]["W"][0, 0] = np.inf
    grads[3]["b"] = np.full_like(grads[3]["b"], np.nan)
    for jit in (False, True):
        runs = []
        for inner in (make(schedule, 0.9), optax.chain(make(schedule, 0.9))):
            tx = co.loss_scaling(inner, interval=2, warn=False)
            p = {k: jnp.asarray(v) for k, v in params.items()}
            state = tx.init(p)
            update = jax.jit(tx.update) if jit else tx.update
            run = []
            for g in grads:
                updates, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
                p = optax.apply_updates(p, updates)
                scaling = co.find_loss_scaling_state(state)
                kept = [*jax.tree.leaves(scaling.inner_state), scaling.scale]
                run.append(([np.asarray(x) for x in jax.tree.leaves(p)], [np.asarray(x) for x in kept]))
            runs.append(run)
        for (p_fast, s_fast), (p_generic, s_generic) in zip(*runs, strict=True):
            for a, b in zip(p_fast + s_fast, p_generic + s_generic, strict=True):
                np.testing.assert_array_equal(a, b)
    assert int(jax.tree.leaves(co.find_loss_scaling_state(state).inner_state)[0]) == len(grads) - 2


def test_a_donated_dynamic_step_allocates_no_parameter_sized_temporary() -> None:
    """Jitted with the parameters and state donated, loss_scaling(corrected_momentum_sgd) writes
    the parameter and the buffer in place: no copy of the buffer, no materialised quotient or
    divisor (the wrapper used to allocate five times a parameter's bytes per step)."""
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.01, 0.9))
    p = [jnp.ones(1 << 20, jnp.float32)]

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    memory = jax.jit(step, donate_argnums=(0, 1)).lower(p, tx.init(p), p).compile().memory_analysis()
    parameter_bytes = 4 << 20
    assert memory.temp_size_in_bytes < parameter_bytes // 64
    assert memory.output_size_in_bytes - memory.alias_size_in_bytes < parameter_bytes // 64


def test_the_compiled_dynamic_step_grows_linearly_with_the_number_of_leaves() -> None:
    """Every leaf's loop reads one verdict scalar, not the reduction of all the leaves' verdicts
    (which XLA fused into each loop: a program, and a compile time, quadratic in the leaves)."""
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.01, 0.9))

    def size(n: int) -> int:
        p = [jnp.ones(16, jnp.float32)] * n

        def step(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        return len(jax.jit(step).lower(p, tx.init(p), p).compile().as_text())

    assert size(160) < 2.5 * size(80)


SMALL_SHAPES = {f"n{n}": (n,) for n in range(1, 10)} | {"m": (3, 5)}


def small_steps() -> tuple[dict, list[dict]]:
    """Parameters of every size from 1 to 9 elements (loops a compiler unrolls) and six steps
    of gradients, the third with a NaN."""
    rng = np.random.default_rng(7)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in SMALL_SHAPES.items()}
    grads = [
        {k: rng.standard_normal(s).astype(np.float32) for k, s in SMALL_SHAPES.items()} for _ in range(6)
    ]
    grads[2]["n4"][1] = np.nan
    return params, grads


def jitted_step(tx, donate: bool):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


@pytest.mark.parametrize("donate", [False, True], ids=["undonated", "donated"])
@pytest.mark.parametrize("generic", [False, True], ids=["own", "chain"])
@pytest.mark.parametrize("make", [co.corrected_momentum_sgd, co.momentum_sgd])
def test_a_kept_scaled_step_is_the_inner_step_on_the_unscaled_gradient_bitwise(make, generic, donate) -> None:
    """Jitted with optax.apply_updates, every kept step of loss_scaling(inner) gives the
    parameters and buffers of inner's own jitted step fed g / s (NumPy's float32 quotient),
    bit for bit, on arrays of 1 to 9 elements: whether XLA fuses p + lr v into a multiply-add
    must not depend on the wrapper. (It did: the skipped branch's +0 update let LLVM move the
    kept branch's last addition away from its product in unrolled loops, so a 2-element shard
    rounded otherwise than the same rows on one device; tests/engines/test_jax_sharding.py.)"""
    params, grads = small_steps()
    inner = make(0.1, 0.9)
    tx = co.loss_scaling(optax.chain(inner) if generic else inner, interval=2, warn=False)
    wrapped, plain = jitted_step(tx, donate), jitted_step(inner, donate)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = tx.init(p)
    q, inner_state = {k: jnp.asarray(v) for k, v in params.items()}, inner.init(p)
    kept = 0
    for g in grads:
        s = np.float32(co.loss_scale(state))
        p, state = wrapped(p, state, {k: jnp.asarray(v) for k, v in g.items()})
        if not all(np.isfinite(v).all() for v in g.values()):
            continue
        kept += 1
        q, inner_state = plain(q, inner_state, {k: jnp.asarray(v / s) for k, v in g.items()})
        scaling = co.find_loss_scaling_state(state)
        got = [*jax.tree.leaves(p), *jax.tree.leaves(scaling.inner_state)]
        want = [*jax.tree.leaves(q), *jax.tree.leaves(inner_state)]
        for a, b in zip(got, want, strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), (kept, np.asarray(a), np.asarray(b))
    assert kept == 5 and float(co.loss_scale(state)) not in (1.0, 2.0, 4.0, 8.0)


@pytest.mark.parametrize("jit", [False, True], ids=["op by op", "jitted"])
@pytest.mark.parametrize("generic", [False, True], ids=["own", "chain"])
def test_a_skipped_step_leaves_every_parameter_bitwise_negative_zeros_included(generic, jit) -> None:
    """Chainer leaves a skipped step's parameters as they were; optax.apply_updates adds the
    skipped step's updates, so they must be -0 (p + -0 is p for every p; p + +0 turns a -0
    parameter into +0)."""
    inner = co.corrected_momentum_sgd(0.1, 0.9)
    tx = co.loss_scaling(optax.chain(inner) if generic else inner, warn=False)
    p = {"w": jnp.asarray([-0.0, 0.0, -1.5, np.inf], jnp.float32), "b": jnp.asarray([-0.0], jnp.float32)}
    step = jitted_step(tx, donate=False) if jit else jitted_step(tx, donate=False).__wrapped__
    state = tx.init(p)
    p, state = step(p, state, {"w": jnp.ones(4, jnp.float32), "b": jnp.ones(1, jnp.float32)})
    p = {"w": p["w"].at[:2].set(jnp.asarray([-0.0, 0.0], jnp.float32)), "b": jnp.asarray([-0.0], jnp.float32)}
    before = {k: np.asarray(v).tobytes() for k, v in p.items()}
    p, state = step(
        p, state, {"w": jnp.asarray([1.0, np.nan, 1.0, 1.0], jnp.float32), "b": jnp.ones(1, jnp.float32)}
    )
    assert {k: np.asarray(v).tobytes() for k, v in p.items()} == before
    assert int(jax.tree.leaves(co.find_loss_scaling_state(state).inner_state)[0]) == 1


def test_static_scale_unscales_and_never_skips() -> None:
    params, grads = problem(6)
    tx = co.loss_scaling(co.corrected_momentum_sgd(schedule, 0.9), scale=128.0)
    scaled = [{k: v * np.float32(128.0) for k, v in g.items()} for g in grads]
    got, state = optax_run(tx, params, scaled)
    assert_equal_runs(got, reference_run(cr.CorrectedMomentumSGD, params, grads))  # 128 is a power of two
    assert float(state.scale) == 128.0 and int(state.interval) == 0
    nan_run, _ = optax_run(tx, params, [{"W": np.full((3, 2), np.nan, np.float32), "b": grads[0]["b"]}])
    assert np.isnan(nan_run[0]["W"]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0}, r"^interval: must be an integer in \[1, 2\*\*63 - 1\], got 0$"),
        ({"interval": 1.5}, r"^interval: expected an integer, got 1\.5 \(float\)$"),
        ({"interval": True}, r"^interval: expected an integer, got True \(bool\)$"),
        ({"interval": 2**31}, r"^interval: loss_scaling records it as an int32, got 2147483648$"),
        (
            {"scale": 0.0},
            r"^loss scale: a loss scale must be finite and in \[2\*\*-126, 2\*\*126\], got 0\.0$",
        ),
        ({"scale": float("inf")}, r"^loss scale: a loss scale must be finite and in .*, got inf$"),
        ({"scale": float("nan")}, r"^loss scale: a loss scale must be finite and in .*, got nan$"),
        ({"scale": 1e-300}, r"^loss scale: a loss scale must be finite and in .*, got 1e-300$"),
        ({"scale": "2"}, r"^loss scale: expected a real number, got '2' \(str\)$"),
    ],
)
def test_loss_scaling_rejects_bad_configuration(kwargs, match) -> None:
    """The reference's rules and messages (corrmom_ref.loss_scaling.check_interval_argument,
    check_scale_argument): interval=1.5, scale=inf and scale='2' were accepted (issue 20, item 4)."""
    with pytest.raises(ValueError, match=match):
        co.loss_scaling(co.corrected_momentum_sgd(), **kwargs)
    reference = cr.CorrectedMomentumSGD().setup(cr.Link(W=cr.Parameter(np.zeros(2, np.float32))))
    if "int32" not in match:
        with pytest.raises(ValueError, match=match):
            reference.loss_scaling(**kwargs)


# -- hyperparameters, parameters and gradients the reference refuses (issue 20, item 4) ------

CMS = "corrected_momentum_sgd"


@pytest.mark.parametrize("factory", [co.corrected_momentum_sgd, co.momentum_sgd])
@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"learning_rate": -0.1}, "learning_rate", "-0.1"),
        ({"learning_rate": float("nan")}, "learning_rate", "nan"),
        ({"learning_rate": float("inf")}, "learning_rate", "inf"),
        ({"momentum": -0.5}, "momentum", "-0.5"),
        ({"learning_rate": np.float32(-1.0)}, "learning_rate", "-1.0"),
        ({"learning_rate": jnp.asarray(-2.0)}, "learning_rate", "-2.0"),
    ],
)
def test_bad_constant_hyperparameters_are_refused_at_construction(factory, kwargs, name, shown) -> None:
    where = factory.__name__
    with pytest.raises(
        ValueError, match=rf"^{where}: hyperparameter '{name}' must be finite and >= 0, got {shown}$"
    ):
        factory(**kwargs)


def test_a_schedule_returning_nan_is_refused_when_the_update_runs_eagerly() -> None:
    tx = co.corrected_momentum_sgd(lambda count: jnp.where(count >= 1, jnp.nan, 0.1), 0.9)
    params = {"W": jnp.ones(3, jnp.float32)}
    grads = {"W": jnp.ones(3, jnp.float32)}
    _, state = tx.update(grads, tx.init(params))
    with pytest.raises(
        ValueError,
        match=rf"^{CMS} \(the schedule's value at count 1\): hyperparameter 'learning_rate' must be finite",
    ):
        tx.update(grads, state)


def test_a_negative_schedule_value_under_jit_makes_the_step_nan_and_raises_without_jit() -> None:
    """Under jax.jit the value is a tracer: the step's updates become NaN (not a step in the
    wrong direction); the same step under jax.disable_jit() raises the ValueError."""
    tx = co.corrected_momentum_sgd(lambda count: 0.1 - 0.2 * count, 0.9)
    params = {"W": jnp.ones(3, jnp.float32)}
    grads = {"W": jnp.ones(3, jnp.float32)}
    step = jax.jit(tx.update)
    updates, state = step(grads, tx.init(params))
    assert np.isfinite(np.asarray(updates["W"])).all()
    updates, bad_state = step(grads, state)
    assert np.isnan(np.asarray(updates["W"])).all()  # p + lr v: the parameters become NaN
    assert not np.isnan(np.asarray(bad_state.velocity["W"])).any()  # v = m v - g takes no lr
    with (
        jax.disable_jit(),
        pytest.raises(
            ValueError,
            match=rf"^{CMS} \(the schedule's value at count 1\): hyperparameter 'learning_rate' must be finite and >= 0, got -0.1",
        ),
    ):
        step(grads, state)


def test_an_injected_negative_learning_rate_is_refused() -> None:
    tx = optax.inject_hyperparams(co.corrected_momentum_sgd)(learning_rate=0.1, momentum=0.9)
    params = {"W": jnp.ones(3, jnp.float32)}
    state = tx.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(-1.0)
    with pytest.raises(
        ValueError, match=rf"^{CMS}: hyperparameter 'learning_rate' must be finite and >= 0, got -1.0$"
    ):
        tx.update({"W": jnp.ones(3, jnp.float32)}, state)
    updates, _ = jax.jit(tx.update)({"W": jnp.ones(3, jnp.float32)}, state)  # traced: NaN, not a wrong step
    assert np.isnan(np.asarray(updates["W"])).all()


def test_integer_parameters_are_refused_naming_the_leaf() -> None:
    params = {"l1": {"W": jnp.ones(3, jnp.float32)}, "steps": jnp.asarray([1, 2], jnp.int32)}
    with pytest.raises(
        TypeError, match=rf"^parameter /steps has dtype int32: {CMS} updates floating-point parameters only"
    ):
        co.corrected_momentum_sgd(0.1, 0.9).init(params)


def test_a_float0_gradient_is_refused_naming_the_leaf() -> None:
    tx = co.corrected_momentum_sgd(0.1, 0.9)
    state = tx.init({"W": jnp.ones(2, jnp.float32)})
    grads = {"W": np.zeros(2, dtype=jax.dtypes.float0)}
    with pytest.raises(TypeError, match=r"^gradient of parameter /W has dtype float0 \(jax\.grad's gradient"):
        tx.update(grads, state)


def test_loss_scale_without_a_loss_scaling_state_names_the_fix() -> None:
    with pytest.raises(ValueError, match="loss_scaling"):
        co.loss_scale(co.corrected_momentum_sgd().init({"w": jnp.zeros(1)}))


# -- snapshots ---------------------------------------------------------------------------


def test_reference_snapshot_continues_as_in_the_reference(tmp_path) -> None:
    """A corrmom_ref snapshot (with its loss scale) loads into the optax state; the next steps agree bitwise."""
    params, grads = problem(7)
    link = cr.Link(l1=cr.Link(W=cr.Parameter(params["W"].copy())), b=cr.Parameter(params["b"].copy()))
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(link)
    opt.loss_scaling(interval=2)

    def ref_step(g: dict) -> None:
        loss = cr.ScriptedLoss({link.l1.W: g["W"], link.b: g["b"]})
        opt.update(lambda: loss)

    for g in grads[:3]:
        ref_step(g)
    cr.serializers.save_npz(tmp_path / "ref.npz", opt)
    tx = co.loss_scaling(
        co.corrected_momentum_sgd(0.1, 0.9), **co.snapshot_loss_scaling(tmp_path / "ref.npz")
    )
    p = {"l1": {"W": jnp.asarray(link.l1.W.array)}, "b": jnp.asarray(link.b.array)}
    state = co.load_chainer_snapshot(tmp_path / "ref.npz", tx.init(p))
    assert float(co.loss_scale(state)) == opt.loss_scale
    for g in grads[3:]:
        s = np.float32(co.loss_scale(state))
        updates, state = tx.update(
            {"l1": {"W": jnp.asarray(g["W"] * s)}, "b": jnp.asarray(g["b"] * s)}, state, p
        )
        p = optax.apply_updates(p, updates)
        ref_step(g)
        np.testing.assert_array_equal(np.asarray(p["l1"]["W"]), link.l1.W.array)
        np.testing.assert_array_equal(np.asarray(p["b"]), link.b.array)
        assert float(co.loss_scale(state)) == opt.loss_scale


def test_custom_mapping_round_trip(tmp_path) -> None:
    params, grads = problem(8)
    tx = co.corrected_momentum_sgd(0.1, 0.9)
    _, state = optax_run(tx, params, grads[:2])
    paths = {"/predictor/fc/W": ("W",), "/predictor/fc/b": ("b",)}
    co.save_chainer_snapshot(tmp_path / "s.npz", state, paths=paths, epoch=3)
    with np.load(tmp_path / "s.npz") as npz:
        assert sorted(npz.files) == [
            "epoch",
            "predictor/fc/W/t",
            "predictor/fc/W/v",
            "predictor/fc/b/t",
            "predictor/fc/b/v",
            "t",
        ]
        assert int(npz["t"]) == 2 and int(npz["epoch"]) == 3
    fresh = tx.init({k: jnp.asarray(v) for k, v in params.items()})
    loaded = co.load_chainer_snapshot(tmp_path / "s.npz", fresh, paths=paths)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), loaded, state))
    with pytest.raises(KeyError, match=r"\('W',\)"):
        co.save_chainer_snapshot(tmp_path / "t.npz", state, paths={"/fc/b": ("b",)})


def test_strict_load_names_the_missing_key_and_non_strict_keeps_the_value(tmp_path) -> None:
    params, grads = problem(9)
    tx = co.corrected_momentum_sgd(0.1, 0.9)
    _, state = optax_run(tx, params, grads[:2])
    co.save_chainer_snapshot(tmp_path / "s.npz", state)
    with np.load(tmp_path / "s.npz") as npz:
        np.savez(tmp_path / "partial.npz", **{k: npz[k] for k in npz.files if k != "b/v"})
    fresh = tx.init({k: jnp.asarray(v) for k, v in params.items()})
    with pytest.raises(KeyError, match="b/v"):
        co.load_chainer_snapshot(tmp_path / "partial.npz", fresh)
    loaded = co.load_chainer_snapshot(tmp_path / "partial.npz", fresh, strict=False)
    np.testing.assert_array_equal(np.asarray(loaded.velocity["b"]), np.zeros(2, np.float32))
    np.testing.assert_array_equal(np.asarray(loaded.velocity["W"]), np.asarray(state.velocity["W"]))


def test_load_rejects_a_wrong_shape_and_a_wrong_loss_scaling(tmp_path) -> None:
    params, grads = problem(10)
    scaled = co.loss_scaling(co.corrected_momentum_sgd(0.1, 0.9), interval=4)
    _, state = optax_run(scaled, params, grads[:2])
    co.save_chainer_snapshot(tmp_path / "s.npz", state)
    other = co.loss_scaling(co.corrected_momentum_sgd(0.1, 0.9), interval=5)
    with pytest.raises(ValueError, match="interval=4"):
        co.load_chainer_snapshot(
            tmp_path / "s.npz", other.init({k: jnp.asarray(v) for k, v in params.items()})
        )
    assert co.snapshot_loss_scaling(tmp_path / "s.npz") == {"interval": 4}
    wrong = co.corrected_momentum_sgd().init({"W": jnp.zeros((2, 3)), "b": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"s.npz.*'W/v': snapshot has shape \(3, 2\), expected \(2, 3\)"):
        co.load_chainer_snapshot(tmp_path / "s.npz", wrong)


def test_snapshot_needs_a_momentum_state(tmp_path) -> None:
    with pytest.raises(ValueError, match="MomentumState"):
        co.save_chainer_snapshot(tmp_path / "s.npz", optax.sgd(0.1).init({"w": jnp.zeros(1)}))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"loss_scaling.dynamic": None}, KeyError, r"'loss_scaling\.dynamic' is missing"),
        ({"loss_scaling.nonfinite_ever": None}, KeyError, r"'loss_scaling\.nonfinite_ever' is missing"),
        ({"loss_scaling.dynamic": np.float64(0.0)}, TypeError, r"'loss_scaling\.dynamic': expected a bool"),
        (
            {"loss_scaling.scale": np.float64(1e-300)},
            ValueError,
            r"'loss_scaling\.scale': a loss scale must be",
        ),
        ({"loss_scaling.interval": np.uint64(2**64 - 1)}, ValueError, r"'loss_scaling\.interval': must be"),
    ],
)
def test_load_reads_loss_scaling_by_the_references_rules(tmp_path, change, error, match) -> None:
    """Issue 20, items 8 and 9: a partial set of loss_scaling keys is an error naming the missing
    one (it loaded silently with the state's own scale), dynamic=0.0 is not a bool, a scale of
    1e-300 is refused (it became 0.0 in float32)."""
    params, grads = problem(11)
    tx = co.loss_scaling(co.corrected_momentum_sgd(0.1, 0.9), interval=4)
    _, state = optax_run(tx, params, grads[:2])
    co.save_chainer_snapshot(tmp_path / "s.npz", state)
    with np.load(tmp_path / "s.npz") as stored:
        members = {k: stored[k] for k in stored.files}
    for key, value in change.items():
        if value is None:
            del members[key]
        else:
            members[key] = np.asarray(value)
    np.savez(tmp_path / "damaged.npz", **members)
    fresh = tx.init({k: jnp.asarray(v) for k, v in params.items()})
    with pytest.raises(error, match=match):
        co.load_chainer_snapshot(tmp_path / "damaged.npz", fresh)
    with pytest.raises(error, match=match):
        co.snapshot_loss_scaling(tmp_path / "damaged.npz")
