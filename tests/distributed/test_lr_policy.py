"""The learning-rate policies (pure Python; no MPI needed). Expected values by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import corrmom_ref as cr
from corrmom_ref.lr_policy import LrSchedule, goyal_schedule, gradual_warmup, linear_scaling, step_decay


def test_linear_scaling_rule_of_the_paper():
    # Goyal et al.: 0.1 for 256 images, so 0.1 * 32 = 3.2 for 8192.
    assert linear_scaling(0.1, 8192, 256) == pytest.approx(3.2)
    with pytest.raises(ValueError):
        linear_scaling(0.1, 0)


def test_gradual_warmup_is_linear_then_flat():
    assert [gradual_warmup(t, 0.4, 4, 0.1) for t in range(6)] == pytest.approx(
        [0.1, 0.175, 0.25, 0.325, 0.4, 0.4]
    )
    assert gradual_warmup(0, 0.4, 0, 0.1) == 0.4


def test_step_decay_multiplies_at_each_boundary():
    assert [step_decay(t, 1.0, [3, 6]) for t in (0, 2, 3, 5, 6, 9)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    with pytest.raises(ValueError):
        step_decay(0, 1.0, [6, 3])


def test_goyal_schedule_combines_warmup_and_decay():
    schedule = goyal_schedule(
        0.1, batch_size=1024, reference_batch_size=256, warmup_iterations=5, boundaries=[10]
    )
    assert [schedule(t) for t in (0, 1, 5, 9, 10)] == pytest.approx([0.1, 0.16, 0.4, 0.4, 0.04])


@given(
    t=st.integers(0, 1000),
    warmup=st.integers(1, 500),
    start=st.floats(0.0, 1.0),
    target=st.floats(0.0, 10.0),
)
def test_warmup_stays_between_start_and_target(t, warmup, start, target):
    lr = gradual_warmup(t, target, warmup, start)
    assert min(start, target) - 1e-12 <= lr <= max(start, target) + 1e-12


def test_lr_schedule_hook_sets_lr_before_each_step():
    w = cr.Parameter(np.zeros(1))
    opt = cr.CorrectedMomentumSGD(momentum=0.9).setup(cr.Link(w=w))
    opt.add_hook(LrSchedule(lambda t: 0.5 / (t + 1)))
    for _ in range(2):
        w.grad = np.ones(1)
        opt.update()
    # step 1: v = -1, w = 0.5 * -1; step 2: v = 0.9 * -1 - 1 = -1.9, w = -0.5 + 0.25 * -1.9
    np.testing.assert_allclose(w.array, [-0.975], rtol=1e-15)
    assert opt.lr == 0.25
