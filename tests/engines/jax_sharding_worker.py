"""corrmom_ref.optax with parameters sharded over 4 CPU devices; run by test_jax_sharding.py.

Needs ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX
is imported (the test starts this script in a fresh process with it).
Trains the same 6 steps twice, under ``jax.jit`` with the parameters and
optimizer state sharded over a 4-device mesh, and on one device, feeding both
the same gradients; at step 2 the gradient holds a NaN in the rows of the
last device's shard only. Checks, asserting (a failure exits non-zero with
the reason):

* every step's parameters, momentum buffers, loss scale and count are
  bitwise the same in both runs, and the sharding is kept;
* the NaN step is skipped everywhere: every shard unchanged, scale halved;
* a Chainer-layout snapshot saved from the sharded state after step 3 is
  byte-for-byte the one-device snapshot, loads into a fresh sharded state,
  and the run resumed from it (resharded with ``jax.device_put``) continues
  bitwise as the uninterrupted one.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import corrmom_ref.optax as cro

STEPS, BAD_STEP, SAVE_AFTER = 6, 2, 3


def gradients(step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(step)
    g = {
        "W": rng.normal(size=(8, 4)).astype(np.float32),
        "b": rng.normal(size=(8,)).astype(np.float32),
        "c": rng.normal(size=(3,)).astype(np.float32),
    }
    if step == BAD_STEP:
        g["W"][7, 1] = np.nan  # row 7: the last device's shard only
    return g


def initial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100)
    return {"W": rng.normal(size=(8, 4)), "b": rng.normal(size=(8,)), "c": rng.normal(size=(3,))}


def transformation() -> optax.GradientTransformation:
    return cro.loss_scaling(cro.corrected_momentum_sgd(0.1, 0.9), interval=2)


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same(a, b, what: str) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, what
        assert x.tobytes() == y.tobytes(), f"{what}: not bitwise equal\n{x}\n{y}"


def main() -> None:
    devices = jax.devices()
    assert len(devices) == 4, f"expected 4 CPU devices (XLA_FLAGS), got {devices}"
    mesh = Mesh(np.array(devices), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())
    param_shardings = {"W": rows, "b": rows, "c": replicated}
    tx = transformation()

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    sharded_params = jax.device_put(
        {k: jnp.asarray(v, jnp.float32) for k, v in initial().items()}, param_shardings
    )
    sharded_state = tx.init(sharded_params)
    # The buffers follow their parameters (tx.init makes them with zeros_like); the
    # counters and the loss scale are scalars, created on one device: replicate them.
    state_shardings = jax.tree.map(lambda x: x.sharding if x.ndim else replicated, sharded_state)
    sharded_state = jax.device_put(sharded_state, state_shardings)
    sharded_step = jax.jit(
        step,
        in_shardings=(param_shardings, state_shardings, param_shardings),
        out_shardings=(param_shardings, state_shardings),
    )
    one = devices[0]
    single_params = jax.device_put({k: jnp.asarray(v, jnp.float32) for k, v in initial().items()}, one)
    single_state = tx.init(single_params)
    single_step = jax.jit(step)
    assert_same(sharded_state, single_state, "the initial state")

    history = []
    saved = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NaN step's warning
        for t in range(STEPS):
            g = gradients(t)
            before = leaves(sharded_params)
            scale_before = float(cro.loss_scale(sharded_state))
            sharded_params, sharded_state = sharded_step(
                sharded_params, sharded_state, jax.device_put(g, param_shardings)
            )
            single_params, single_state = single_step(single_params, single_state, jax.device_put(g, one))
            jax.block_until_ready((sharded_params, single_params))
            assert_same(sharded_params, single_params, f"parameters after step {t}")
            assert_same(sharded_state, single_state, f"optimizer state after step {t}")
            for name, sharding in param_shardings.items():
                assert sharded_params[name].sharding.is_equivalent_to(sharding, sharded_params[name].ndim), (
                    name
                )
            velocity = sharded_state.inner_state.velocity
            for name, sharding in param_shardings.items():
                assert velocity[name].sharding.is_equivalent_to(sharding, velocity[name].ndim), name
            skipped = all(np.array_equal(b, a) for b, a in zip(before, leaves(sharded_params), strict=True))
            assert skipped == (t == BAD_STEP), f"step {t}: skipped={skipped}"
            if t == BAD_STEP:  # every device's shard stayed, the scale halved on all
                for shard in sharded_params["W"].addressable_shards:
                    rows_of = shard.index[0]
                    assert np.array_equal(np.asarray(shard.data), before[0][rows_of]), shard.device
                assert float(cro.loss_scale(sharded_state)) == scale_before / 2
            history.append((sharded_params, sharded_state))
            if t + 1 == SAVE_AFTER:
                folder = Path(tempfile.mkdtemp())
                saved["sharded"] = folder / "sharded.npz"
                saved["single"] = folder / "single.npz"
                cro.save_chainer_snapshot(saved["sharded"], sharded_state)
                cro.save_chainer_snapshot(saved["single"], single_state)
                saved["params"] = sharded_params

    a, b = np.load(saved["sharded"]), np.load(saved["single"])
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key

    params = saved["params"]
    fresh = tx.init(params)
    resumed = cro.load_chainer_snapshot(saved["sharded"], fresh)
    resumed = jax.device_put(resumed, state_shardings)
    assert_same(resumed, history[SAVE_AFTER - 1][1], "the loaded state")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(SAVE_AFTER, STEPS):
            params, resumed = sharded_step(params, resumed, jax.device_put(gradients(t), param_shardings))
            assert_same(params, history[t][0], f"resumed parameters after step {t}")
            assert_same(resumed, history[t][1], f"resumed state after step {t}")
    print(
        f"ok: {len(devices)} devices, {STEPS} steps, step {BAD_STEP} skipped on every shard, resumed after {SAVE_AFTER}"
    )


if __name__ == "__main__":
    sys.exit(main())
