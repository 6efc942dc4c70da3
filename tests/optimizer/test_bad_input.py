"""Every bad input raises a clear error naming the culprit, and changes nothing.

Each test brings an optimizer into a mid-training state (states exist,
counters advanced, a dynamic loss scale that has moved), takes a deep
snapshot (:func:`helpers.deep_snapshot`), does the bad thing, and checks the
error type, that the message names the parameter path or key, and that the
snapshot is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from backends import Backend
from helpers import (
    as_file,
    assert_fails_cleanly,
    assert_same_snapshot,
    corrupt,
    deep_snapshot,
    other_run,
    saved,
    trained,
)

import corrmom_ref as cr


def pre_hook_must_not_run(opt: cr.GradientMethod) -> None:
    def hook(_: Any) -> None:
        raise AssertionError("a pre hook ran although the inputs were invalid")

    opt.add_hook(hook, name="must_not_run")


# -- hyperparameters -----------------------------------------------------------

BAD_VALUES = [
    pytest.param(-0.1, ValueError, id="negative"),
    pytest.param(math.nan, ValueError, id="nan"),
    pytest.param(math.inf, ValueError, id="inf"),
    pytest.param("0.1", TypeError, id="str"),
    pytest.param(None, TypeError, id="None"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param(np.array([0.1, 0.2]), TypeError, id="array"),
]


@pytest.mark.parametrize("name", ["lr", "momentum"])
@pytest.mark.parametrize(("value", "error"), BAD_VALUES)
def test_bad_hyperparameter_in_constructor(name: str, value: Any, error: type) -> None:
    classes = [cr.CorrectedMomentumSGD, cr.MomentumSGD]
    if value is not None:  # for a rule, None means "use the optimizer's value"
        classes += [cr.CorrectedMomentumSGDRule, cr.MomentumSGDRule]
    for cls in classes:
        with pytest.raises(error, match=name):
            cls(**{name: value})


@pytest.mark.parametrize("name", ["lr", "momentum"])
@pytest.mark.parametrize(("value", "error"), BAD_VALUES)
def test_bad_optimizer_hyperparameter_at_update(bk: Backend, name: str, value: Any, error: type) -> None:
    opt = trained(bk)
    setattr(opt, name, value)
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, error, rf"parameter /a: hyperparameter '{name}'")


@pytest.mark.parametrize("name", ["lr", "momentum"])
@pytest.mark.parametrize(("value", "error"), BAD_VALUES)
def test_bad_per_parameter_hyperparameter(bk: Backend, name: str, value: Any, error: type) -> None:
    opt = trained(bk)
    setattr(opt.target.l1.W.update_rule.hyperparam, name, value)
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, error, rf"parameter /l1/W: hyperparameter '{name}'")


class _Computed(cr.Hyperparameter):
    """A hyperparameter whose ``lr`` and ``momentum`` are computed, not held as entries."""

    __slots__ = ("_values",)  # outside the entries (the instance's __dict__)

    def __init__(self, parent: cr.Hyperparameter, lr: float, momentum: float) -> None:
        super().__init__(parent)
        self._values = {"lr": lr, "momentum": momentum}

    @property
    def lr(self) -> float:
        return self._values["lr"]

    @property
    def momentum(self) -> float:
        return self._values["momentum"]


def test_a_computed_bad_hyperparameter_is_caught_after_the_root_was_checked(bk: Backend) -> None:
    """/l1/W comes after /a, whose check covers the optimizer's values; W's hyperparameter holds
    no entry of its own but computes a negative ``lr``, so it must be checked in full."""
    opt = trained(bk)
    rule = opt.target.l1.W.update_rule
    rule.hyperparam = _Computed(opt.hyperparam, lr=-0.5, momentum=0.5)
    assert vars(rule.hyperparam).keys() == {"_parent"}
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, ValueError, r"parameter /l1/W: hyperparameter 'lr'")


def test_a_computed_good_hyperparameter_does_not_vouch_for_the_optimizers(bk: Backend) -> None:
    """/a, first in the walk, computes valid values of its own; the optimizer's ``lr`` is bad and
    must still be found at /l1/W, the first parameter that reads it."""
    opt = trained(bk)
    rule = opt.target.a.update_rule
    rule.hyperparam = _Computed(opt.hyperparam, lr=0.5, momentum=0.5)
    opt.lr = -1.0
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, ValueError, r"parameter /l1/W: hyperparameter 'lr'")


def test_a_bad_value_in_another_parent_is_caught(bk: Backend) -> None:
    """A rule whose hyperparameter falls back to a parent other than the optimizer's is checked
    against that parent, even after the optimizer's values were checked for its rule class."""
    opt = trained(bk)
    other = cr.Hyperparameter()
    other.lr, other.momentum = -1.0, 0.5
    opt.target.l1.W.update_rule.hyperparam = cr.Hyperparameter(other)
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, ValueError, r"parameter /l1/W: hyperparameter 'lr'")


class _Sequence(cr.Hyperparameter):
    """A hyperparameter whose ``lr`` is the next of ``values`` at every read."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self._next = iter(values)

    @property
    def lr(self) -> float:
        return next(self._next)


def test_every_rule_is_checked_when_a_value_comes_from_above_the_optimizer() -> None:
    """The optimizer's hyperparameter holds no ``lr``: it is computed above it, and the second
    rule's read gets a NaN. A check of the first rule of the class does not cover the second."""
    W1, W2 = (cr.Parameter(np.ones(2, np.float32)) for _ in range(2))
    opt = cr.CorrectedMomentumSGD(momentum=0.5)
    opt.hyperparam = cr.Hyperparameter(_Sequence([0.5, math.nan, 0.5, 0.5]))
    opt.hyperparam.momentum = 0.5
    opt.setup(cr.Link(a=W1, b=W2))
    for W in (W1, W2):
        W.grad = np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"parameter /b: hyperparameter 'lr' must be finite"):
        opt.update()
    np.testing.assert_array_equal(W1.array, np.ones(2, np.float32))
    assert opt.t == 0


def test_valid_values_of_other_real_types_pass_for_every_rule(bk: Backend) -> None:
    """Values that are not Python floats (NumPy scalars, integers) take the full check, and pass."""
    opt = trained(bk)
    opt.lr = np.float64(0.25)
    opt.target.l1.W.update_rule.hyperparam.momentum = 1
    opt.update()
    assert opt.t == 3


# -- gradients -----------------------------------------------------------------


def test_gradient_of_wrong_shape(bk: Backend) -> None:
    opt = trained(bk)
    opt.target.l1.W.grad = bk.asarray(np.ones((3, 2)), "float32")
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, ValueError, r"/l1/W has shape \(3, 2\), expected \(2, 3\)")


def test_gradient_of_wrong_dtype(bk: Backend) -> None:
    opt = trained(bk)
    opt.target.l1.W.grad = bk.asarray(np.ones((2, 3)), "float64")
    pre_hook_must_not_run(opt)
    assert_fails_cleanly(bk, opt, opt.update, TypeError, r"/l1/W has dtype .*float64")


def test_gradient_from_another_backend(bk: Backend) -> None:
    """A gradient from another library (or a list) is refused, naming both types."""
    opt = trained(bk)
    foreign: Any = [[1.0] * 3] * 2
    if bk.module is not np:
        foreign = np.ones((2, 3), np.float32)
    opt.target.l1.W.grad = foreign
    assert_fails_cleanly(bk, opt, opt.update, TypeError, r"gradient of parameter /l1/W is a ")


def test_gradient_on_another_device(bk: Backend) -> None:
    if bk.other_device is None:
        pytest.skip(f"{bk.name} offers no second device here")
    opt = trained(bk)
    W = opt.target.l1.W
    W.grad = bk.module.asarray(W.grad, device=bk.other_device) if bk.name != "torch" else W.grad.to("meta")
    assert_fails_cleanly(bk, opt, opt.update, ValueError, r"/l1/W is on device")


def test_gradient_on_the_same_device_under_another_sharding_is_accepted(bk: Backend) -> None:
    """JAX: arrays are compared by sharding first (cheap); equal devices under unequal shardings still match."""
    if bk.name != "jax":
        pytest.skip("shardings are JAX's")
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    opt = trained(bk)
    W = opt.target.l1.W
    one_device_mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
    W.grad = jax.device_put(W.grad, NamedSharding(one_device_mesh, PartitionSpec()))
    assert W.grad.sharding != W.array.sharding
    before = bk.to_numpy(W.array)
    opt.update()
    assert not np.array_equal(bk.to_numpy(W.array), before)


def test_a_weakly_typed_gradient_of_the_right_dtype_is_accepted(bk: Backend) -> None:
    """JAX: gradients are first compared by ``aval``, which also holds the weak type; a weakly
    typed gradient differs from the parameter's aval only there and must still pass."""
    if bk.name != "jax":
        pytest.skip("weak types are JAX's")
    import jax.numpy as jnp

    grad = jnp.full((3,), 0.5)  # filled from a Python float: weakly typed, default float dtype
    w = cr.Parameter(jnp.asarray([1.0, 2.0, 3.0], dtype=grad.dtype))
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(cr.Link(w=w))
    w.grad = grad
    assert grad.aval != w.array.aval and grad.dtype == w.array.dtype
    opt.update()
    np.testing.assert_array_equal(bk.to_numpy(w.array), [0.75, 1.75, 2.75])


def test_bad_gradient_from_lossfun(bk: Backend) -> None:
    """A loss whose backward produces a bad gradient: parameters, states, counters unchanged."""
    opt = trained(bk)
    W = opt.target.l1.W
    bad = bk.asarray(np.ones(4), "float32")
    before = deep_snapshot(bk, opt)
    with pytest.raises(ValueError, match=r"/l1/W has shape \(4,\)"):
        opt.update(lambda: cr.ScriptedLoss({W: bad}))
    after = deep_snapshot(bk, opt)
    for path, _ in opt.target.namedparams():  # backward legitimately replaced the gradients
        for key in ("grad", "loss_scale"):
            after[path][key] = before[path][key]
    assert_same_snapshot(before, after)


# -- setup, hooks, loss scaling ---------------------------------------------------


@pytest.mark.parametrize("target", [None, 3, np.zeros(2), cr.Parameter(np.zeros(2))])
def test_setup_needs_a_link(target: Any) -> None:
    with pytest.raises(TypeError, match="link"):
        cr.CorrectedMomentumSGD().setup(target)


@pytest.mark.parametrize(
    "value", [1.5, [1.0, 2.0], "x"]
)  # None: a lazy parameter (test_chainer_extension_api)
def test_parameter_needs_an_array(value: Any) -> None:
    with pytest.raises(TypeError):
        cr.Parameter(value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -3}, "interval"),
        ({"interval": 1.5}, "interval"),
        ({"scale": 0.0}, "loss scale"),
        ({"scale": -2.0}, "loss scale"),
        ({"scale": math.nan}, "loss scale"),
    ],
)
def test_bad_loss_scaling_configuration(bk: Backend, kwargs: dict, match: str) -> None:
    opt = trained(bk)
    assert_fails_cleanly(bk, opt, lambda: opt.loss_scaling(**kwargs), ValueError, match)


# -- snapshots -----------------------------------------------------------------------


SNAPSHOT_CASES = [
    pytest.param(
        lambda a: a.__setitem__("l1/W/v", np.zeros((3, 2), np.float32)),
        ValueError,
        r"parameter /l1/W state 'v': snapshot has shape \(3, 2\)",
        id="state-shape",
    ),
    pytest.param(
        lambda a: a.__setitem__("l1/W/v", np.zeros((2, 3), np.float64)),
        TypeError,
        r"parameter /l1/W state 'v': snapshot has dtype float64",
        id="state-dtype",
    ),
    pytest.param(
        lambda a: a.__setitem__("l1/W/v", np.zeros((2, 3), np.int32)),
        TypeError,
        r"parameter /l1/W state 'v'",
        id="state-int",
    ),
    pytest.param(lambda a: a.__setitem__("l1/W/t", np.float64(1.5)), TypeError, r"l1/W/t", id="rule-t-float"),
    pytest.param(lambda a: a.__setitem__("t", np.arange(2)), ValueError, r"'t'|optimizer t", id="t-array"),
    pytest.param(lambda a: a.__setitem__("epoch", np.float64(0.5)), TypeError, "epoch", id="epoch-float"),
    pytest.param(lambda a: a.pop("l1/W/v"), KeyError, r"l1/W/v", id="missing-state"),
    pytest.param(lambda a: a.pop("t"), KeyError, r"'t'", id="missing-t"),
    pytest.param(
        lambda a: a.__setitem__("loss_scaling.scale", np.float64(-1.0)),
        ValueError,
        "loss_scaling.scale",
        id="negative-scale",
    ),
    pytest.param(
        lambda a: a.__setitem__("loss_scaling.interval", np.int64(0)),
        ValueError,
        "loss_scaling.interval",
        id="zero-interval",
    ),
]


@pytest.mark.parametrize(("change", "error", "match"), SNAPSHOT_CASES)
def test_bad_optimizer_snapshot(bk: Backend, change: Callable, error: type, match: str) -> None:
    opt = trained(bk)
    file = corrupt(bk, change)
    assert_fails_cleanly(bk, opt, lambda: cr.serializers.load_npz(file, opt), error, match)


def test_pickled_snapshot_is_refused(bk: Backend) -> None:
    """An object array would need unpickling (which can run code): refused, nothing loaded."""
    opt = trained(bk)
    arrays: dict[str, Any] = saved(other_run(bk))
    arrays["l1/W/v"] = np.array([{"payload": 1}, None], dtype=object)
    file = as_file(arrays)
    assert_fails_cleanly(bk, opt, lambda: cr.serializers.load_npz(file, opt), ValueError, r"'l1/W/v'.*pickle")


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        pytest.param(
            lambda a: a.__setitem__("l1/W", np.zeros((3, 2), np.float32)),
            ValueError,
            r"parameter /l1/W: snapshot has shape",
            id="shape",
        ),
        pytest.param(
            lambda a: a.__setitem__("l1/W", np.zeros((2, 3), np.float16)),
            TypeError,
            r"parameter /l1/W: snapshot has dtype float16",
            id="dtype",
        ),
        pytest.param(lambda a: a.pop("l1/b"), KeyError, r"l1/b", id="missing"),
    ],
)
def test_bad_link_snapshot(bk: Backend, change: Callable, error: type, match: str) -> None:
    """Loading a model: /a (valid, first) must not be assigned when /l1/W is bad."""
    opt = trained(bk)
    arrays = saved(other_run(bk).target)
    change(arrays)
    file = as_file(arrays)
    assert_fails_cleanly(bk, opt, lambda: cr.serializers.load_npz(file, opt.target), error, match)


def test_pre_hook_that_breaks_a_gradient(bk: Backend) -> None:
    """Gradients are checked again after the pre hooks: a hook that leaves a bad one
    makes update() raise before t, any rule, or the loss-scaling state moves,
    even on a step whose gradients were not finite."""
    opt = trained(bk)
    W = opt.target.l1.W
    W.grad = bk.asarray(np.full((2, 3), np.inf), "float32")  # would set "overflow seen"

    def reshape_grad(o: cr.GradientMethod) -> None:
        o.target.l1.W.grad = bk.asarray(np.ones(6), "float32")

    opt.add_hook(reshape_grad, name="reshape")
    before = deep_snapshot(bk, opt)
    with pytest.raises(ValueError, match=r"/l1/W has shape \(6,\)"), pytest.warns(UserWarning):
        opt.update()
    after = deep_snapshot(bk, opt)
    after["/l1/W"]["grad"] = before["/l1/W"]["grad"]  # the hook's doing
    assert_same_snapshot(before, after)
