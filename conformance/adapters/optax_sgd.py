"""``--impl=optax``: ``optax.sgd(momentum=...)`` with the lr schedule via ``inject_hyperparams``.

optax's ``sgd`` is ``trace`` (eq. (9): ``t = g + m t``, zeros at first) then
a scale by ``-lr``. It has no notion of a cleared gradient, per-parameter
hyperparameters without ``multi_transform``, loss scaling, hooks or
Chainer's counters, so those checks are not applicable. Snapshots are the
state's leaves in an npz file. JAX runs with 64-bit floats enabled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["OptaxAdapter", "factory"]

CAPABILITIES = frozenset({"eq9", "state", "chainer_sign", "zero_initial_state", "serialize"})


class OptaxRun:
    """A :class:`conformance.protocol.Run` over ``optax.inject_hyperparams(optax.sgd)``."""

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, momentum: float) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        self._jax, self._jnp, self._optax = jax, jnp, optax
        self.tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
        self.w = {n: jnp.asarray(np.array(a, copy=True)) for n, a in params.items()}
        self.state = self.tx.init(self.w)

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        g = {n: self._jnp.asarray(grads[n]) for n in self.w}
        updates, self.state = self.tx.update(g, self.state, self.w)
        self.w = self._optax.apply_updates(self.w, updates)

    def params(self) -> dict[str, np.ndarray]:
        return {n: np.array(a) for n, a in self.w.items()}

    def set_lr(self, lr: float, name: str | None = None) -> None:
        self.state.hyperparams["learning_rate"] = self._jnp.asarray(lr)

    def set_momentum(self, momentum: float, name: str | None = None) -> None:
        self.state.hyperparams["momentum"] = self._jnp.asarray(momentum)

    def velocity(self, name: str) -> np.ndarray | None:
        trace = self.state.inner_state[0].trace
        return -np.array(trace[name])

    def save(self, path: str) -> None:
        leaves = self._jax.tree_util.tree_leaves(self.state)
        np.savez(path, *[np.asarray(leaf) for leaf in leaves])

    def load(self, path: str, strict: bool = True) -> None:
        treedef = self._jax.tree_util.tree_structure(self.state)
        with np.load(path) as npz:
            leaves = [self._jnp.asarray(npz[f"arr_{i}"]) for i in range(len(npz.files))]
        self.state = self._jax.tree_util.tree_unflatten(treedef, leaves)

    def native(self) -> Any:
        return self.tx

    def _absent(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("not declared by the optax adapter")

    t = rule_t = loss_scaling = loss_scale = add_hook = remove_hook = call_hooks = _absent
    new_epoch = epoch = _absent


class OptaxAdapter:
    """``optax.sgd`` as an :class:`conformance.protocol.Adapter`."""

    name = "optax"
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        import jax
        import optax

        jax.config.update("jax_enable_x64", True)
        self.version = optax.__version__
        self.backend = "jax"

    def __repr__(self) -> str:
        return f"<optax.sgd {self.version}>"

    def make(self, params: Mapping[str, np.ndarray], lr: float, momentum: float,
             fp32_update: bool = False) -> OptaxRun:
        return OptaxRun(params, lr, momentum)


def factory(backend: str = "numpy") -> OptaxAdapter:
    """The ``--impl=optax`` adapter (``--backend`` is ignored: arrays are JAX's)."""
    return OptaxAdapter()
