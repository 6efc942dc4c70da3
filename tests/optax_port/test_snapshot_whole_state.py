"""An optax snapshot round-trips the whole optimizer state it is given (issue 20, item 3).

With ``optax.inject_hyperparams``, c1ab618's snapshot kept only the momentum
and loss-scaling states: on resume the schedule's count restarted and a
hyperparameter set by hand through ``state.hyperparams`` came back as the
constructor's. Now every other leaf is saved under ``optax.<pytree path>``,
and a resumed run equals the uninterrupted one bitwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import corrmom_ref as cr  # noqa: E402
import corrmom_ref.optax as co  # noqa: E402

STEPS_BEFORE, STEPS_AFTER = 4, 4


def problem() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(20)
    params = {
        "l1": {"W": rng.standard_normal((3, 2)).astype(np.float32)},
        "b": rng.standard_normal(3).astype(np.float32),
    }
    grads = [
        {
            "l1": {"W": rng.standard_normal((3, 2)).astype(np.float32)},
            "b": rng.standard_normal(3).astype(np.float32),
        }
        for _ in range(STEPS_BEFORE + STEPS_AFTER)
    ]
    return jax.tree.map(jnp.asarray, params), grads


def transformation(scaled: bool) -> optax.GradientTransformation:
    injected = optax.inject_hyperparams(co.corrected_momentum_sgd)(
        learning_rate=optax.linear_schedule(0.1, 0.01, transition_steps=8), momentum=0.9
    )
    return co.loss_scaling(injected, interval=2) if scaled else injected


def injected_state(state: Any) -> Any:
    return state.inner_state if isinstance(state, co.LossScalingState) else state


def step(tx: optax.GradientTransformation, params: Any, state: Any, grad: Any) -> tuple[Any, Any]:
    if isinstance(state, co.LossScalingState):
        scale = np.float32(co.loss_scale(state))
        grad = jax.tree.map(lambda g: jnp.asarray(g * scale), grad)
    updates, state = tx.update(jax.tree.map(jnp.asarray, grad), state, params)
    return optax.apply_updates(params, updates), state


def run_until_snapshot(tx: optax.GradientTransformation, params: Any, grads: list[Any]) -> tuple[Any, Any]:
    state = tx.init(params)
    for i, g in enumerate(grads[:STEPS_BEFORE]):
        params, state = step(tx, params, state, g)
        if i == 1:  # a hyperparameter set by hand, as optax's documentation shows
            injected_state(state).hyperparams["momentum"] = jnp.asarray(0.5, jnp.float32)
    return params, state


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "loss_scaled"])
def test_resumed_inject_hyperparams_run_equals_the_uninterrupted_one_bitwise(
    tmp_path: Path, scaled: bool
) -> None:
    tx = transformation(scaled)
    params0, grads = problem()
    params, state = run_until_snapshot(tx, params0, grads)
    co.save_chainer_snapshot(tmp_path / "s.npz", state)

    straight_params, straight_state = params, state
    for g in grads[STEPS_BEFORE:]:
        straight_params, straight_state = step(tx, straight_params, straight_state, g)

    resumed_state = co.load_chainer_snapshot(tmp_path / "s.npz", tx.init(params))
    assert int(injected_state(resumed_state).count) == STEPS_BEFORE
    assert float(injected_state(resumed_state).hyperparams["momentum"]) == 0.5
    resumed_params = params
    for g in grads[STEPS_BEFORE:]:
        resumed_params, resumed_state = step(tx, resumed_params, resumed_state, g)

    for got, want in zip(jax.tree.leaves(resumed_params), jax.tree.leaves(straight_params), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(jax.tree.leaves(resumed_state), jax.tree.leaves(straight_state), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_the_other_leaves_are_saved_under_optax_keys(tmp_path: Path) -> None:
    tx = transformation(scaled=False)
    params, grads = problem()
    _, state = run_until_snapshot(tx, params, grads)
    co.save_chainer_snapshot(tmp_path / "s.npz", state)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert int(npz["optax.count"]) == STEPS_BEFORE
        assert float(npz["optax.hyperparams/momentum"]) == 0.5
        assert int(npz["optax:leaves"]) == 4
        assert {k for k in npz.files if k.startswith("optax.")} == {
            "optax.count",
            "optax.hyperparams/learning_rate",
            "optax.hyperparams/momentum",
            "optax.hyperparams_states/learning_rate/count",
        }


def test_a_snapshot_missing_one_of_the_leaves_is_refused_under_strict(tmp_path: Path) -> None:
    tx = transformation(scaled=False)
    params, grads = problem()
    _, state = run_until_snapshot(tx, params, grads)
    co.save_chainer_snapshot(tmp_path / "s.npz", state)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        np.savez(tmp_path / "partial.npz", **{k: npz[k] for k in npz.files if k != "optax.count"})
    target = tx.init(params)
    with pytest.raises(
        cr.serializers.SnapshotError, match=r"partial\.npz.*'optax\.count' is not in the snapshot"
    ):
        co.load_chainer_snapshot(tmp_path / "partial.npz", target)
    with pytest.raises(KeyError):  # also a KeyError, as a missing key always was
        co.load_chainer_snapshot(tmp_path / "partial.npz", target)
    loaded = co.load_chainer_snapshot(tmp_path / "partial.npz", target, strict=False)
    assert int(loaded.count) == 0  # the state's own
    assert float(loaded.hyperparams["momentum"]) == 0.5  # the snapshot's


def test_a_snapshot_without_optax_state_keeps_the_states_own_leaves(tmp_path: Path) -> None:
    """The reference's (or Chainer's) snapshot holds no optax state: its leaves stay as they are."""
    params, _ = problem()
    link = cr.Link(
        l1=cr.Link(W=cr.Parameter(np.asarray(params["l1"]["W"]))), b=cr.Parameter(np.asarray(params["b"]))
    )
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(link)
    link.l1.W.grad = np.ones((3, 2), np.float32)
    link.b.grad = np.ones(3, np.float32)
    opt.update()
    cr.serializers.save_npz(tmp_path / "reference.npz", opt)
    target = transformation(scaled=False).init(params)
    loaded = co.load_chainer_snapshot(tmp_path / "reference.npz", target)
    assert int(loaded.count) == 0 and float(loaded.hyperparams["momentum"]) == np.float32(0.9)
    np.testing.assert_array_equal(np.asarray(loaded.inner_state.velocity["b"]), -np.ones(3, np.float32))


class _Labelled(NamedTuple):
    label: Any


def test_a_leaf_a_snapshot_cannot_represent_is_refused_before_the_file_is_touched(tmp_path: Path) -> None:
    labelled = optax.GradientTransformation(lambda params: _Labelled("warm-up"), lambda u, s, p=None: (u, s))
    tx = optax.chain(co.corrected_momentum_sgd(0.1, 0.9), labelled)
    params, _ = problem()
    with pytest.raises(ValueError, match=r"pytree path \(1, 'label'\) is a str"):
        co.save_chainer_snapshot(tmp_path / "s.npz", tx.init(params))
    assert not (tmp_path / "s.npz").exists()


def test_an_optax_leaf_of_another_dtype_is_refused_naming_its_key(tmp_path: Path) -> None:
    tx = transformation(scaled=False)
    params, grads = problem()
    _, state = run_until_snapshot(tx, params, grads)
    co.save_chainer_snapshot(tmp_path / "s.npz", state)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["optax.count"] = np.asarray(4.0)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(cr.serializers.SnapshotError, match=r"'optax\.count'.*float64, expected int32"):
        co.load_chainer_snapshot(tmp_path / "bad.npz", tx.init(params))
