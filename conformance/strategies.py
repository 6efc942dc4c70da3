"""Hypothesis strategies for the suite: lr schedules, momenta, shapes, gradients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from conformance.oracle import Step

__all__ = ["Case", "cases", "lr_schedules", "momenta"]

#: Momenta worth trying: none, the paper's 0.9, and others.
momenta = st.one_of(st.sampled_from([0.0, 0.9, 0.5]), st.floats(0.0, 0.99))

_BASE_LR = st.sampled_from([0.1, 0.5, 1.0, 0.25, 0.05])


@st.composite
def lr_schedules(draw: st.DrawFn, n: int) -> list[float]:
    """``n`` learning rates: constant, gradual warm-up, step decay or arbitrary (all > 0).

    Warm-up is Goyal et al.'s: linear from ``base / k`` to ``base`` over ``k``
    steps, then constant. Step decay divides by 10 every ``period`` steps.
    """
    kind = draw(st.sampled_from(["constant", "warmup", "step_decay", "random"]))
    base = draw(_BASE_LR)
    if kind == "constant":
        return [base] * n
    if kind == "warmup":
        k = draw(st.integers(2, max(2, n)))
        return [base * min(t + 1, k) / k for t in range(n)]
    if kind == "step_decay":
        period = draw(st.integers(1, max(1, n - 1)))
        return [base * 0.1 ** (t // period) for t in range(n)]
    return draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n))


_SHAPES = st.sampled_from([(), (3,), (2, 2)])
_GRAD_ELEMENT = st.floats(-4.0, 4.0, width=16, allow_subnormal=False)


@dataclass(frozen=True)
class Case:
    """Initial parameters and the steps applied to them."""

    w0: dict[str, np.ndarray]
    steps: list[Step]
    dtype: np.dtype


@st.composite
def cases(draw: st.DrawFn, dtypes: tuple[str, ...] = ("float64", "float32"), max_steps: int = 8,
          constant_lr: bool = False, cleared: bool = True, overrides: bool = False,
          momentum: float | None = None, changing_momentum: bool = False) -> Case:
    """A small problem: one to three parameters, a schedule, gradients (some cleared)."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    names = draw(st.lists(st.sampled_from(["W", "b", "c"]), min_size=1, max_size=3, unique=True))
    shapes = {n: draw(_SHAPES) for n in names}
    w0 = {n: np.array(draw(st.lists(_GRAD_ELEMENT, min_size=int(np.prod(s)), max_size=int(np.prod(s)))),
                      dtype=dtype).reshape(s) for n, s in shapes.items()}
    n_steps = draw(st.integers(1, max_steps))
    lrs = [0.1] * n_steps if constant_lr else draw(lr_schedules(n_steps))
    m = momentum if momentum is not None else draw(momenta)
    ms = [m] * n_steps if not changing_momentum else [draw(momenta) for _ in range(n_steps)]
    own_lr = {n: draw(lr_schedules(n_steps)) for n in names if overrides and draw(st.booleans())}
    steps = []
    for t in range(n_steps):
        grads: dict[str, np.ndarray | None] = {}
        for n, s in shapes.items():
            if cleared and draw(st.integers(0, 5)) == 0:
                grads[n] = None
            else:
                flat = draw(st.lists(_GRAD_ELEMENT, min_size=int(np.prod(s)), max_size=int(np.prod(s))))
                grads[n] = np.array(flat, dtype=dtype).reshape(s)
        steps.append(Step(grads, {n: own_lr[n][t] if n in own_lr else lrs[t] for n in names},
                          {n: ms[t] for n in names}))
    return Case(w0, steps, dtype)
