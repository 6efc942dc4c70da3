"""corrmom_ref.optax with parameters sharded over devices, under ``jax.jit``.

Run on CPU with 4 simulated devices::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/jax_sharded_corrected_momentum.py

The parameters are split by rows over a 4-device mesh; the momentum buffers
follow them (``tx.init`` makes them like the parameters) and the scalar
state (counts, loss scale) is replicated. Every reduction in the update,
the loss-scaling verdict included, is over the whole (global) array, so a
NaN in one device's shard skips the step on all of them.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import corrmom_ref.optax as cro


def main(snapshot: str = "jax_optimizer.npz") -> None:
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    shardings = {"W": rows, "b": rows}
    params = jax.device_put({"W": jnp.ones((8, 4)), "b": jnp.zeros(8)}, shardings)
    tx = cro.loss_scaling(cro.corrected_momentum_sgd(0.1, 0.9), interval=1000)
    state = tx.init(params)
    state_shardings = jax.tree.map(lambda x: x.sharding if x.ndim else replicated, state)
    state = jax.device_put(state, state_shardings)

    @jax.jit
    def step(params, state, x):
        def scaled_loss(p):  # Chainer's loss.backward(loss_scale=s): differentiate s * loss
            return jnp.mean((x @ p["W"].T + p["b"]) ** 2) * cro.loss_scale(state)

        scaled, grads = jax.value_and_grad(scaled_loss)(params)
        loss = scaled / cro.loss_scale(state)
        updates, state = tx.update(grads, state, params)  # divides by s, skips on a non-finite one
        return optax.apply_updates(params, updates), state, loss

    for t in range(5):
        x = jax.random.normal(jax.random.key(t), (16, 4))
        params, state, loss = step(params, state, x)
    print(
        f"loss {float(loss):.4f}, W sharded as {params['W'].sharding.spec}, scale {float(cro.loss_scale(state))}"
    )
    cro.save_chainer_snapshot(snapshot, state)  # gathers each buffer to the host
    restored = jax.device_put(cro.load_chainer_snapshot(snapshot, tx.init(params)), state_shardings)
    print(f"reloaded, t = {int(restored.count)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
