"""Family 6: random API sequences against the oracle model.

A Hypothesis state machine drives the implementation and
:class:`corrmom_conformance.oracle.ChainerModel` side by side through steps (with
cleared and non-finite gradients), learning-rate and momentum changes,
dynamic loss scaling, save/load round trips into a fresh optimizer and epochs; after every rule the
parameters, ``t``, the epoch and the loss scale must agree. A failure prints
the shortest program of API calls that shows it.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from corrmom_conformance.checks._support import quiet
from corrmom_conformance.judging import rules_left_out
from corrmom_conformance.oracle import ChainerModel
from corrmom_conformance.run_state import current_adapter
from corrmom_conformance.tolerances import LOSS_SCALE_RTOL, assert_close, trajectory_atol

SHAPES = {"W": (2, 2), "b": (3,)}

#: What a declared deviation may leave out (its ``without``): the rules, the kinds
#: of step ``cleared_gradient`` and ``non_finite_gradient``, and ``zero_momentum``
#: (a momentum of 0, then drawn as 0.5).
OPTIONAL = frozenset(
    {
        "set_lr",
        "set_momentum",
        "dynamic_loss_scaling",
        "save_and_reload_into_a_fresh_optimizer",
        "new_epoch",
        "cleared_gradient",
        "non_finite_gradient",
        "zero_momentum",
    }
)


def _left_out() -> frozenset[str]:
    left_out = rules_left_out()
    unknown = left_out - OPTIONAL
    if unknown:
        raise ValueError(
            f"a deviation leaves out unknown state-machine rules {sorted(unknown)}; known: {sorted(OPTIONAL)}"
        )
    return left_out


values = st.floats(-2, 2, width=32, allow_nan=False)


class OptimizerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.adapter = current_adapter()
        self.left_out = _left_out()
        self.dir = tempfile.TemporaryDirectory()
        self.saves = 0

    def teardown(self) -> None:
        self.dir.cleanup()

    @initialize(seed=st.integers(0, 2**16), lr=st.sampled_from([0.1, 0.01]), m=st.sampled_from([0.0, 0.9]))
    def setup(self, seed, lr, m):
        m = self._momentum(m)
        rng = np.random.default_rng(seed)
        init = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
        self.opt = self.adapter.create(init, lr=lr, momentum=m)
        self.model = ChainerModel({k: v.astype(np.float64) for k, v in init.items()}, lr=lr, momentum=m)

    @rule(
        data=st.data(),
        cleared=st.sampled_from([None, "W", "b"]),
        poison=st.sampled_from([None, np.nan, np.inf]),
    )
    def step(self, data, cleared, poison):
        grads = {
            k: np.array(
                data.draw(st.lists(values, min_size=math.prod(s), max_size=math.prod(s))), np.float32
            ).reshape(s)
            for k, s in SHAPES.items()
        }
        if "cleared_gradient" in self.left_out:
            cleared = None
        if "non_finite_gradient" in self.left_out:
            poison = None
        if poison is not None and self.model.loss.dynamic:  # only dynamic scaling skips such steps
            grads["b"][0] = poison
        if cleared is not None:
            grads[cleared] = None
        if any(g is None for g in grads.values()) and "cleared_grads" not in self.adapter.capabilities:
            return
        with quiet():
            self.opt.step(grads)
        self.model.step(grads)

    def _momentum(self, m: float) -> float:
        return 0.5 if m == 0.0 and "zero_momentum" in self.left_out else m

    @precondition(lambda self: "set_lr" not in self.left_out)
    @rule(lr=st.sampled_from([0.2, 0.05, 0.01]))
    def set_lr(self, lr):
        self.opt.set_lr(lr)
        self.model.lr = lr

    @precondition(lambda self: "set_momentum" not in self.left_out)
    @rule(m=st.sampled_from([0.0, 0.5, 0.9]))
    def set_momentum(self, m):
        m = self._momentum(m)
        self.opt.set_momentum(m)
        self.model.momentum = m

    @precondition(
        lambda self: (
            "loss_scaling" in self.adapter.capabilities and "dynamic_loss_scaling" not in self.left_out
        )
    )
    @rule(interval=st.integers(1, 4))
    def dynamic_loss_scaling(self, interval):
        self.opt.loss_scaling(interval=interval)
        self.model.loss.configure(interval=interval)

    @precondition(
        lambda self: (
            "serialize_npz" in self.adapter.capabilities
            and "save_and_reload_into_a_fresh_optimizer" not in self.left_out
            and hasattr(self, "opt")
        )
    )
    @rule()
    def save_and_reload_into_a_fresh_optimizer(self):
        """Save, then carry on with a FRESH optimizer (created with the current lr and
        momentum, loss scaling configured again as a resumed run would) that loaded
        the snapshot: whatever the load forgets shows in the invariant."""
        path = str(Path(self.dir.name) / f"s{self.saves}.npz")
        self.saves += 1
        self.opt.save(path)
        fresh = self.adapter.create(self.opt.params(), lr=self.model.lr, momentum=self.model.momentum)
        if self.model.loss.dynamic:
            fresh.loss_scaling(interval=self.model.loss.interval)
            scale, ever = self.model.loss.scale, self.model.loss.nonfinite_ever
            self.model.loss.configure(interval=self.model.loss.interval)
            if self._restores_loss_scale():
                self.model.loss.scale, self.model.loss.nonfinite_ever = scale, ever
        with quiet():
            fresh.load(path, strict=False)  # a never-updated rule saves no state
        self.opt = fresh

    def _restores_loss_scale(self) -> bool:
        """Whether snapshots carry the dynamic loss scale (the reference's extra keys; Chainer's do not)."""
        with np.load(str(Path(self.dir.name) / f"s{self.saves - 1}.npz"), allow_pickle=False) as npz:
            return "loss_scaling.scale" in npz.files

    @precondition(lambda self: "epochs" in self.adapter.capabilities and "new_epoch" not in self.left_out)
    @rule()
    def new_epoch(self):
        self.opt.new_epoch()
        self.model.epoch += 1

    @invariant()
    def agrees_with_the_model(self):
        if not hasattr(self, "opt"):
            return
        params = self.opt.params()
        magnitude = max([1.0] + [float(np.max(np.abs(v))) for v in self.model.w.values()])
        for k, w in self.model.w.items():
            assert_close(
                params[k],
                w,
                trajectory_atol(np.float32, self.model.t + 1, 10 * magnitude),
                f"parameter {k!r} at t={self.model.t}",
            )
        if "counters" in self.adapter.capabilities:
            assert self.opt.t == self.model.t, f"t is {self.opt.t}, model {self.model.t}"
        if "epochs" in self.adapter.capabilities:
            assert self.opt.epoch == self.model.epoch, f"epoch is {self.opt.epoch}, model {self.model.epoch}"
        if self.model.loss.dynamic:
            scale = self.opt.loss_scale
            assert scale is not None and math.isclose(
                scale, self.model.loss.scale, rel_tol=LOSS_SCALE_RTOL
            ), f"loss scale {scale}, model {self.model.loss.scale}"


TestOptimizerMachine = OptimizerMachine.TestCase
# pytest reads a class's marks from this attribute, which Hypothesis's generated class does not declare
TestOptimizerMachine.pytestmark = [pytest.mark.requires("hyperparams")]  # type: ignore[attr-defined]
