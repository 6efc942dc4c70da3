"""``--impl=optax``: ``optax.inject_hyperparams(optax.sgd)(learning_rate, momentum)``.

optax's trace is eq. (9)'s ``u`` (``state_sign = +1``). It has no loss
scaling, hooks, counters, cleared gradients, per-parameter hyperparameters or
npz snapshots, so those checks are not applicable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class OptaxSGDOptimizer:
    def __init__(
        self, jax: Any, optax: Any, params: Mapping[str, np.ndarray], lr: float, momentum: float
    ) -> None:
        self._jax, self._optax = jax, optax
        self._params = {k: jax.numpy.asarray(v) for k, v in params.items()}
        self._tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
        self._state = self._tx.init(self._params)

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        jnp = self._jax.numpy
        g = {k: jnp.asarray(grads[k], dtype=self._params[k].dtype) for k in self._params}
        updates, self._state = self._tx.update(g, self._state, self._params)
        self._params = self._optax.apply_updates(self._params, updates)

    def params(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self._params.items()}

    def state(self) -> dict[str, np.ndarray | None]:
        trace = self._state.inner_state[0].trace
        return {k: np.array(v) for k, v in trace.items()}

    def set_lr(self, lr: float) -> None:
        self._state.hyperparams["learning_rate"] = self._jax.numpy.asarray(lr)

    def set_momentum(self, momentum: float) -> None:
        self._state.hyperparams["momentum"] = self._jax.numpy.asarray(momentum)


class OptaxSGDAdapter:
    """``optax.sgd``; its optimizer gives the protocol's ``Optimizer``, ``SupportsState`` and ``SupportsHyperparams``."""

    name = "optax"
    state_sign = 1.0
    capabilities = frozenset({"hyperparams", "state", "float64"})

    def __init__(self) -> None:
        import jax
        import optax

        jax.config.update("jax_enable_x64", True)
        self._jax, self._optax = jax, optax
        self.version = optax.__version__
        self.backend = f"jax {jax.__version__}:cpu"

    def create(self, params: Mapping[str, np.ndarray], *, lr: float, momentum: float) -> OptaxSGDOptimizer:
        return OptaxSGDOptimizer(self._jax, self._optax, params, lr, momentum)


def make_adapter() -> OptaxSGDAdapter:
    """Factory for ``--impl=optax``."""
    return OptaxSGDAdapter()
