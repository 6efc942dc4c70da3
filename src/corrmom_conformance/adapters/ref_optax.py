"""``--impl=ref-optax``: :func:`corrmom_ref.optax.corrected_momentum_sgd` in an optax training step.

Built the way an optax user would: the parameters are a nested dict
(``'l1/W'`` becomes ``{'l1': {'W': ...}}``, so the default snapshot mapping
applies), every parameter gets its own label in ``optax.partition`` with
``optax.inject_hyperparams(corrected_momentum_sgd)`` (optax's way to change a
hyperparameter between steps and for one parameter), and
:func:`corrmom_ref.optax.loss_scaling` wraps the whole when loss scaling is on.
Each step is one ``jax.jit``-compiled ``update`` + ``apply_updates``; the
exact variant (:meth:`RefOptaxAdapter.exact_variant`) runs the same step op by
op, as the module's documented way to Chainer's roundings without XLA flags.
A cleared gradient is passed as zeros: JAX has no cleared gradient, and
``jax.grad`` gives zeros for a parameter the loss does not reach, which is
what Chainer reallocates.

Not applicable, because optax's idiom cannot express them (see :data:`NOT_APPLICABLE`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from corrmom_conformance.adapters import _links

#: Capabilities this adapter leaves out, and why.
NOT_APPLICABLE: dict[str, str] = {
    "fp32_master": "JAX's mixed-precision idiom keeps float32 parameters and casts them to float16 for the "
    "forward pass (as jmp does); a float32 master copy inside the optax state would duplicate every parameter "
    "and return updates in another dtype than the parameters'",
    "hooks": "optax composes gradient processing with optax.chain when the transformation is built; there is "
    "no registry of named hooks to add or remove at run time",
    "rule_hooks": "as hooks: optax has no per-parameter update-rule objects",
    "epochs": "optax keeps no epoch counter (the training loop does)",
    "generic_variant": "the native/generic split is the reference's dispatch; optax has one update",
}


def _path(name: str) -> tuple[str, ...]:
    return tuple(name.split("/"))


def _get(tree: Mapping[str, Any], name: str) -> Any:
    node: Any = tree
    for part in _path(name):
        node = node[part]
    return node


@functools.cache
def _transformation(labels: tuple[str, ...], scaling: tuple[int, float | None] | None) -> Any:
    import optax

    import corrmom_ref.optax as co

    inner = optax.partition(
        {label: optax.inject_hyperparams(co.corrected_momentum_sgd)(0.0, 0.0) for label in labels},
        lambda params: _links.nest({label: label for label in labels}),
    )
    if scaling is None:
        return inner
    interval, scale = scaling
    return co.loss_scaling(inner, interval=interval, scale=scale)


@functools.cache
def _stepper(labels: tuple[str, ...], scaling: tuple[int, float | None] | None, exact: bool = False) -> Any:
    """One training step: jitted, or (``exact``) run op by op under :func:`jax.disable_jit`, where XLA
    compiles each operation alone and so fuses no multiply-add (the exact mode of ``corrmom_ref.optax``)."""
    import jax
    import optax

    tx = _transformation(labels, scaling)

    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    if not exact:
        return jax.jit(step)

    def op_by_op(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        with jax.disable_jit():
            return step(params, state, grads)

    return op_by_op


class RefOptaxOptimizer:
    def __init__(
        self, jax: Any, params: Mapping[str, np.ndarray], lr: float, momentum: float, exact: bool = False
    ) -> None:
        self._jax = jax
        self._exact = exact
        jnp = jax.numpy
        self._names = tuple(params)
        self._dtypes = {k: np.asarray(v).dtype for k, v in params.items()}
        self._params = _links.nest({k: jnp.asarray(np.array(v, copy=True)) for k, v in params.items()})
        self._scaling: tuple[int, float | None] | None = None
        self._state = _transformation(self._names, None).init(self._params)
        self._hyper = {k: {"learning_rate": lr, "momentum": momentum} for k in self._names}
        self._overrides: dict[str, set[str]] = {k: set() for k in self._names}
        self._push_hyperparams()

    # -- the optax state ---------------------------------------------------------

    def _partition_state(self) -> Any:
        import corrmom_ref.optax as co

        wrapper = co.find_loss_scaling_state(self._state)
        return self._state if wrapper is None else wrapper.inner_state

    def _label_state(self, name: str) -> Any:
        return self._partition_state().inner_states[name].inner_state

    def _push_hyperparams(self) -> None:
        jnp = self._jax.numpy
        for name in self._names:
            hyper = self._label_state(name).hyperparams
            for key, value in self._hyper[name].items():
                hyper[key] = jnp.asarray(value, dtype=hyper[key].dtype)

    # -- stepping ----------------------------------------------------------

    def step(self, grads: Mapping[str, np.ndarray | None]) -> None:
        jnp = self._jax.numpy
        scale = self.loss_scale
        flat = {}
        for name in self._names:
            dtype = self._dtypes[name]
            g = grads.get(name)
            g = np.zeros(_get(self._params, name).shape, dtype) if g is None else np.asarray(g, dtype)
            # scaled in the parameter's dtype, as the backward pass of a scaled loss would
            flat[name] = jnp.asarray(g if scale is None else g * dtype.type(scale))
        params, state = _stepper(self._names, self._scaling, self._exact)(
            self._params, self._state, _links.nest(flat)
        )
        self._params, self._state = self._jax.block_until_ready((params, state))  # warnings come out here

    def params(self) -> dict[str, np.ndarray]:
        return {k: np.array(_get(self._params, k)) for k in self._names}

    def state(self) -> dict[str, np.ndarray | None]:
        return {k: np.array(_get(self._label_state(k).inner_state.velocity, k)) for k in self._names}

    @property
    def t(self) -> int:
        import corrmom_ref.optax as co

        wrapper = co.find_loss_scaling_state(self._state)
        if wrapper is not None:
            return int(wrapper.count)
        return max(self.rule_t(k) for k in self._names)

    def rule_t(self, name: str) -> int:
        return int(self._label_state(name).inner_state.count)

    # -- hyperparameters -------------------------------------------------------

    def _set(self, key: str, value: float, names: tuple[str, ...]) -> None:
        for name in names:
            self._hyper[name][key] = value
        self._push_hyperparams()

    def set_lr(self, lr: float) -> None:
        self._set("learning_rate", lr, tuple(k for k in self._names if "lr" not in self._overrides[k]))

    def set_momentum(self, momentum: float) -> None:
        self._set("momentum", momentum, tuple(k for k in self._names if "momentum" not in self._overrides[k]))

    def set_param_hyperparam(self, name: str, key: str, value: float) -> None:
        self._overrides[name].add(key)
        self._set({"lr": "learning_rate"}.get(key, key), value, (name,))

    # -- loss scaling --------------------------------------------------------

    def _rewrapped(self, scaling: tuple[int, float | None]) -> Any:
        """The current state under a fresh ``loss_scaling`` with this configuration."""
        fresh = _transformation(self._names, scaling).init(self._params)
        return fresh._replace(count=fresh.count + self.t, inner_state=self._partition_state())

    def loss_scaling(self, interval: int = 1000, scale: float | None = None) -> None:
        import corrmom_ref.optax as co

        co.loss_scaling(_transformation(self._names, None), interval=interval, scale=scale)  # validates
        scaling = (interval, None if scale is None else float(scale))
        self._state = self._rewrapped(scaling)
        self._scaling = scaling

    @property
    def loss_scale(self) -> float | None:
        import corrmom_ref.optax as co

        wrapper = co.find_loss_scaling_state(self._state)
        return None if wrapper is None else float(wrapper.scale)

    # -- snapshots -------------------------------------------------------------

    def save(self, path: str) -> None:
        import corrmom_ref.optax as co

        co.save_chainer_snapshot(path, self._state)

    def load(self, path: str, strict: bool = True) -> None:
        import corrmom_ref.optax as co

        # The transformation's structure comes from the code that builds it: rebuild
        # it for the snapshot's loss scaling, as a user resuming such a run would.
        config = co.snapshot_loss_scaling(path)
        scaling = self._scaling
        state = self._state
        if config is not None:
            scaling = (config.get("interval", 1000), config.get("scale"))
            if scaling != self._scaling:
                state = self._rewrapped(scaling)
        loaded = co.load_chainer_snapshot(path, state, strict=strict)
        self._state, self._scaling = loaded, scaling
        self._push_hyperparams()


class RefOptaxAdapter:
    """``corrmom_ref.optax``; its optimizer gives ``Optimizer`` and the protocols of the declared
    capabilities that have members (``state``, ``counters``, ``hyperparams``,
    ``per_param_hyperparams``, ``loss_scaling``, ``serialize_npz``)."""

    name = "ref-optax"
    state_sign = -1.0
    capabilities = frozenset(
        {
            "hyperparams",
            "per_param_hyperparams",
            "state",
            "counters",
            "cleared_grads",
            "loss_scaling",
            "serialize_npz",
            "warnings",
            "float16",
            "float64",
            "exact_variant",
        }
    )
    not_applicable = NOT_APPLICABLE

    def __init__(self, exact: bool = False) -> None:
        import jax
        import optax

        import corrmom_ref

        jax.config.update("jax_enable_x64", True)
        self._jax = jax
        self._exact = exact
        self.version = f"{corrmom_ref.__version__} (optax {optax.__version__})"
        self.backend = f"jax {jax.__version__}:cpu" + (" (op by op)" if exact else "")
        if exact:  # no fused multiply-add: Chainer's roundings, and the unscale a true division
            self.capabilities = self.capabilities | {"chainer_rounding"}

    def exact_variant(self) -> RefOptaxAdapter:
        """The same training step run op by op (:func:`jax.disable_jit`): no multiply-add is fused, so
        each step rounds as Chainer's NumPy code (capability ``chainer_rounding``)."""
        return RefOptaxAdapter(exact=True)

    def create(self, params: Mapping[str, np.ndarray], *, lr: float, momentum: float) -> RefOptaxOptimizer:
        return RefOptaxOptimizer(self._jax, params, lr, momentum, self._exact)


def make_adapter() -> RefOptaxAdapter:
    """Factory for ``--impl=ref-optax``."""
    return RefOptaxAdapter()
