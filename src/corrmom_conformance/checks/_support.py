"""Helpers shared by the check modules: standard problems, stepping, comparison."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from corrmom_conformance import oracle
from corrmom_conformance.tolerances import assert_close, bitwise_equal, trajectory_atol

Grads = Mapping[str, np.ndarray | None]


def problem(
    seed: int, shapes: Mapping[str, tuple[int, ...]], dtype: Any = np.float32
) -> dict[str, np.ndarray]:
    """Initial parameters: standard normal values of ``dtype``."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def gradients(seed: int, params: Mapping[str, np.ndarray], steps: int) -> list[dict[str, np.ndarray]]:
    """``steps`` sets of standard normal gradients shaped and typed like ``params``."""
    rng = np.random.default_rng(seed + 1)
    return [
        {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()} for _ in range(steps)
    ]


@contextmanager
def quiet() -> Iterator[None]:
    """Hide the implementation's warnings (checks that test warnings catch them themselves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run(opt: Any, grads: Sequence[Grads], lrs: Sequence[float] | None = None) -> list[dict[str, np.ndarray]]:
    """Step ``opt`` through ``grads`` (setting ``lrs`` first if given); parameters after each step."""
    out = []
    with quiet():
        for i, g in enumerate(grads):
            if lrs is not None:
                opt.set_lr(lrs[i])
            opt.step(g)
            out.append(opt.params())
    return out


def assert_trajectory(
    actual: Sequence[Mapping[str, np.ndarray]],
    expected: Sequence[Mapping[str, np.ndarray]],
    dtype: Any,
    what: str = "parameter",
) -> None:
    """Compare step by step within :func:`~corrmom_conformance.tolerances.trajectory_atol`; name the first divergence."""
    magnitude = max(
        float(np.max(np.abs(np.asarray(v, dtype=float)))) for step in expected for v in step.values()
    )
    for t, (got, want) in enumerate(zip(actual, expected, strict=True), start=1):
        atol = trajectory_atol(dtype, t, magnitude)
        for name in want:
            assert_close(got[name], want[name], atol, f"{what} {name!r} first diverges at step {t}")


def oracle_eq9(
    params: Mapping[str, np.ndarray], grads: Sequence[Grads], lrs: Sequence[float], momenta: Sequence[float]
) -> list[dict[str, np.ndarray]]:
    """Eq. (9) in float64 for each parameter (cleared gradients as zeros)."""
    per_param = {
        name: oracle.eq9(
            w0.astype(np.float64),
            [
                np.zeros_like(w0, np.float64) if g.get(name) is None else np.asarray(g[name], np.float64)
                for g in grads
            ],
            lrs,
            momenta,
        )
        for name, w0 in params.items()
    }
    return [{name: per_param[name][t][0] for name in params} for t in range(len(grads))]


def first_difference(
    a: Sequence[Mapping[str, np.ndarray]], b: Sequence[Mapping[str, np.ndarray]]
) -> tuple[int, str] | None:
    """The first (step, name) where two trajectories are not bitwise equal (:func:`bitwise_equal`)."""
    for t, (x, y) in enumerate(zip(a, b, strict=True), start=1):
        for name in x:
            if not bitwise_equal(x[name], y[name]):
                return t, name
    return None


def dtypes_of(adapter: Any) -> list[Any]:
    """The float dtypes the adapter supports (float32 always)."""
    out: list[Any] = [np.float32]
    if "float64" in adapter.capabilities:
        out.append(np.float64)
    return out
