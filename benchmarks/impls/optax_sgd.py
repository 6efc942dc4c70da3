"""optax's ``sgd(lr, momentum=0.9)`` under ``jax.jit`` with the parameters and state donated.

optax's ``trace`` keeps ``t <- m t + g`` and the update is ``p <- p - lr t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.impls.base import LR, MOMENTUM, Shape, host_data, time_steps


class OptaxSGD:
    """One jitted, donated step over the whole parameter list."""

    name = "optax sgd jit+donate"

    def setup(self, shapes: Sequence[Shape]) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        params, grads = host_data(shapes)
        tx = optax.sgd(LR, momentum=MOMENTUM)
        self._params: Any = [jnp.asarray(p) for p in params]
        self._grads = [jnp.asarray(g) for g in grads]
        self._state: Any = tx.init(self._params)

        def step(params: Any, state: Any, grads: Any) -> Any:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        self._step = jax.jit(step, donate_argnums=(0, 1))
        self._block = jax.block_until_ready
        self.run(1)

    def _one(self) -> None:
        self._params, self._state = self._step(self._params, self._state, self._grads)

    def run(self, steps: int) -> float:
        return time_steps(self._one, steps, lambda: self._block(self._params))

    def peak_extra_bytes(self) -> int | None:
        return None  # the CPU client reports no allocator statistics

    def close(self) -> None:
        self._params = self._state = self._grads = None
