"""Small helpers shared by the tests: models, deep snapshots of optimizer state."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from backends import Backend

import corrmom_ref as cr


def nested_link(bk: Backend, dtype: str = "float32") -> cr.Link:
    """``/a`` (shape (3,)), ``/l1/W`` (2x3), ``/l1/b`` (2,): a nested model with distinct values."""
    return cr.Link(
        a=cr.Parameter(bk.asarray([0.5, -1.0, 2.0], dtype)),
        l1=cr.Link(
            W=cr.Parameter(bk.asarray(np.arange(6).reshape(2, 3) / 4 - 0.5, dtype)),
            b=cr.Parameter(bk.asarray([1.0, -0.25], dtype)),
        ),
    )


def set_grads(bk: Backend, link: cr.Link, scale: float = 1.0, dtype: str | None = None) -> None:
    """Give every parameter a deterministic, distinct gradient."""
    for k, (_, param) in enumerate(link.namedparams()):
        shape = param.shape
        values = (np.arange(int(np.prod(shape))).reshape(shape) + k + 1) * scale / 8
        param.grad = bk.asarray(values, dtype or _dtype_name(param.dtype))


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def deep_snapshot(bk: Backend, opt: cr.GradientMethod) -> dict[str, Any]:
    """Copies of everything an update or a load may change.

    Every parameter's array, gradient, loss scale, rule counter, enabled
    flag, state arrays and hyperparameter overrides; the optimizer's ``t``,
    ``epoch``, hyperparameters and loss-scaling configuration.
    """
    snap: dict[str, Any] = {
        "t": opt.t,
        "epoch": opt.epoch,
        "hyperparam": dict(opt.hyperparam.get_dict()),
        "loss_scale": opt.loss_scale,
        "dynamic": opt.dynamic_loss_scaling,
        "isnan_ever": opt._loss_scaling.nonfinite_ever,
        "interval": opt._loss_scaling.interval,
    }
    for path, param in opt.target.namedparams():
        rule = param.update_rule
        state = rule.state
        snap[path] = {
            "array": bk.to_numpy(param.array),
            "grad": None if param.grad is None else _host(bk, param.grad),
            "loss_scale": param.loss_scale,
            "rule_t": rule.t,
            "enabled": rule.enabled,
            "own_hyperparam": {k: v for k, v in rule.hyperparam.__dict__.items() if k != "_parent"},
            "state": None if state is None else {k: bk.to_numpy(a) for k, a in state.items()},
        }
    return snap


def _host(bk: Backend, x: Any) -> Any:
    """A NumPy copy, or for an array that cannot reach the host (a torch 'meta'
    tensor) its identity, type and device."""
    try:
        return bk.to_numpy(x)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return (id(x), type(x).__name__, str(getattr(x, "device", None)))


def assert_same_snapshot(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Assert two :func:`deep_snapshot` results are equal (arrays bitwise, NaN == NaN)."""
    assert before.keys() == after.keys()
    for key in before:
        _assert_same(before[key], after[key], key)


def _assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


# -- an optimizer mid-training, and failures that must change nothing (bad-input tests) --


def trained(bk: Backend, dtype: str = "float32") -> cr.GradientMethod:
    """An optimizer on :func:`nested_link` after two clean steps with dynamic scaling."""
    link = nested_link(bk, dtype)
    opt = cr.CorrectedMomentumSGD(lr=0.25, momentum=0.5).setup(link)
    opt.loss_scaling(interval=3)
    for _ in range(2):
        set_grads(bk, link)
        opt.update()
    set_grads(bk, link, scale=3.0)  # fresh, valid gradients for the next step
    return opt


def assert_fails_cleanly(
    bk: Backend, opt: cr.GradientMethod, action: Callable[[], Any], error: type, match: str
) -> None:
    """``action()`` raises ``error`` matching ``match`` and leaves ``opt`` as it was."""
    before = deep_snapshot(bk, opt)
    with pytest.raises(error, match=match):
        action()
    assert_same_snapshot(before, deep_snapshot(bk, opt))


def saved(obj: Any) -> dict[str, np.ndarray]:
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, obj)
    buffer.seek(0)
    with np.load(buffer) as npz:
        return {k: npz[k] for k in npz.files}


def as_file(arrays: dict[str, Any]) -> io.BytesIO:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    return buffer


def other_run(bk: Backend) -> cr.GradientMethod:
    """A differently trained optimizer on the same structure: valid snapshot contents."""
    opt = trained(bk)
    set_grads(bk, opt.target, scale=-5.0)
    opt.update()
    return opt


def corrupt(bk: Backend, change: Callable[[dict], None]) -> io.BytesIO:
    arrays = saved(other_run(bk))
    change(arrays)
    return as_file(arrays)
