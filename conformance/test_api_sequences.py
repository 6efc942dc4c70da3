"""Family 6: random API sequences against the oracle model (a hypothesis state machine).

Rules drive steps (with cleared gradients and, under dynamic loss scaling,
overflows), lr and momentum changes (global and per parameter), loss-scaling
configuration, save/load into a fresh optimizer, and epochs. After every rule
the implementation must match the model: parameters, state (Chainer's sign),
step counters, epoch and loss scale. A failure prints the shortest program.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from conformance.applicability import require
from conformance.tolerances import SCALE_RTOL, trajectory_atol

NAMES = ("W", "b")
SHAPES = {"W": (2, 2), "b": (3,)}
ELEMENT = st.floats(-4.0, 4.0, width=16, allow_subnormal=False)
LR = st.sampled_from([0.01, 0.1, 0.25, 0.5, 1.0])
MOMENTUM = st.sampled_from([0.0, 0.5, 0.9, 0.99])


def _array(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    size = int(np.prod(shape))
    return st.lists(ELEMENT, min_size=size, max_size=size).map(lambda xs: np.array(xs).reshape(shape))


def machine_for(impl: Any) -> type[RuleBasedStateMachine]:
    """A state machine class bound to one adapter."""
    caps = impl.capabilities

    class Sequences(RuleBasedStateMachine):
        @initialize(w0=st.fixed_dictionaries({n: _array(s) for n, s in SHAPES.items()}), lr=LR, m=MOMENTUM)
        def setup(self, w0: dict[str, np.ndarray], lr: float, m: float) -> None:
            self.run = impl.make(w0, lr=lr, momentum=m)
            self.w = {n: a.copy() for n, a in w0.items()}
            self.u = {n: np.zeros_like(a) for n, a in w0.items()}
            self.lr, self.m = lr, m
            self.own_lr: dict[str, float] = {}
            self.t, self.rule_t, self.epoch, self.steps = 0, dict.fromkeys(NAMES, 0), 0, 0
            self.scale: float | None = None
            self.dynamic, self.interval, self.ever = False, 1, False
            self.biggest = float(max(np.max(np.abs(a)) for a in w0.values()))

        @rule(data=st.data())
        def step(self, data: st.DataObject) -> None:
            cleared = "cleared_grad_moves" in caps
            grads = {n: (None if cleared and data.draw(st.integers(0, 4)) == 0 else data.draw(_array(s)))
                     for n, s in SHAPES.items()}
            overflow = self.dynamic and "nan_skipping" in caps and data.draw(st.integers(0, 3)) == 0
            if overflow:
                bad = data.draw(st.sampled_from(NAMES))
                g = grads[bad] if grads[bad] is not None else np.zeros(SHAPES[bad])
                g = g.copy()
                g.flat[0] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
                grads[bad] = g
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.run.step(grads)
            self.t += 1
            self.steps += 1
            if not overflow:
                for n in NAMES:
                    g = grads[n] if grads[n] is not None else np.zeros(SHAPES[n])
                    self.u[n] = self.m * self.u[n] + g
                    self.w[n] = self.w[n] - self.own_lr.get(n, self.lr) * self.u[n]
                    self.rule_t[n] += 1
                    self.biggest = max(self.biggest, float(np.max(np.abs(self.w[n]))),
                                       float(np.max(np.abs(self.u[n]))))
            if self.dynamic:
                self.ever = self.ever or overflow
                factor = 0.5 if overflow else (math.pow(2.0, 1.0 / self.interval) if self.ever else 2.0)
                self.scale = min(65504.0, max(1.0, self.scale * factor))

        @rule(lr=LR)
        def set_lr(self, lr: float) -> None:
            self.run.set_lr(lr)
            self.lr = lr

        @rule(m=MOMENTUM)
        def set_momentum(self, m: float) -> None:
            self.run.set_momentum(m)
            self.m = m

        @precondition(lambda self: "per_param_hyperparams" in caps)
        @rule(name=st.sampled_from(NAMES), lr=LR)
        def override_lr(self, name: str, lr: float) -> None:
            self.run.set_lr(lr, name)
            self.own_lr[name] = lr

        @precondition(lambda self: "dynamic_loss_scaling" in caps and self.scale is None)
        @rule(interval=st.integers(1, 4))
        def dynamic_scaling(self, interval: int) -> None:
            self.run.loss_scaling(interval=interval)
            self.dynamic, self.interval, self.scale, self.ever = True, interval, 1.0, False

        @precondition(lambda self: "static_loss_scaling" in caps and self.scale is None)
        @rule(scale=st.sampled_from([2.0, 128.0, 1024.0]))
        def static_scaling(self, scale: float) -> None:
            self.run.loss_scaling(scale=scale)
            self.scale = scale

        @precondition(lambda self: "serialize" in caps and self.scale is None and self.steps > 0)
        @rule()
        def save_and_resume(self) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "s.npz")
                self.run.save(path)
                self.run = impl.make(self.run.params(), lr=self.lr, momentum=self.m)
                self.run.load(path)
            self.own_lr = {}  # per-parameter hyperparameters are not saved

        @precondition(lambda self: "epochs" in caps)
        @rule()
        def new_epoch(self) -> None:
            self.run.new_epoch()
            self.epoch += 1

        @invariant()
        def matches_model(self) -> None:
            if not hasattr(self, "run"):
                return
            tol = trajectory_atol(np.dtype(np.float64), self.steps, self.biggest * 2)
            got = self.run.params()
            for n in NAMES:
                assert np.all(np.abs(got[n] - self.w[n]) <= tol), (
                    f"after {self.steps} steps: {n} = {got[n].tolist()}, model {self.w[n].tolist()}")
                if {"state", "chainer_sign"} <= caps and self.rule_t[n]:
                    v = self.run.velocity(n)
                    assert v is not None and np.all(np.abs(v + self.u[n]) <= tol), (
                        f"after {self.steps} steps: state of {n} = {v}, model -u = {(-self.u[n]).tolist()}")
            if "step_counters" in caps:
                assert self.run.t() == self.t, f"t = {self.run.t()}, model {self.t}"
                for n in NAMES:
                    assert self.run.rule_t(n) == self.rule_t[n], f"rule t of {n}: {self.run.rule_t(n)}"
            if "epochs" in caps:
                assert self.run.epoch() == self.epoch
            if self.scale is not None:
                assert math.isclose(self.run.loss_scale(), self.scale, rel_tol=SCALE_RTOL), (
                    f"loss scale {self.run.loss_scale()}, model {self.scale}")

    return Sequences


def test_random_api_sequences(impl: Any) -> None:
    """Random programs over the optimizer API agree with the model after every call."""
    require(impl, "eq9")
    current = settings()
    run_state_machine_as_test(machine_for(impl), settings=settings(
        current, max_examples=max(5, current.max_examples // 2), stateful_step_count=25))
