"""corrmom_ref.optax on parameters sharded over 4 CPU devices under jax.jit (see jax_sharding_worker.py).

The worker needs ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
before JAX is imported, so it runs in a fresh process; it asserts bitwise
agreement with one device at every step, a NaN in one device's shard
skipping the step on every shard, kept shardings, and a Chainer-layout
snapshot saved from and loaded into the sharded state.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

from launch import HERE, SRC


def test_sharded_over_four_devices_steps_as_one_device_skips_together_and_resumes():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(HERE / "jax_sharding_worker.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert "ok: 4 devices, 6 steps, step 2 skipped on every shard, resumed after 3" in out.stdout
