r"""Family 7: native fast paths against the implementation's own generic path.

An implementation that runs the step through native kernels (a fused
multiply-add kernel, a compiled function) declares ``generic_variant``: the
same implementation with those kernels off. From the same parameters, state
and gradient, one step of each may differ only by the rounding a fused
multiply-add saves: with :math:`k` = ``fast_path_roundings`` and
:math:`\epsilon` the dtype's machine epsilon, elementwise

.. math::

    |v_f - v_g| \le k\epsilon\,(|m\,v| + |v_g|), \qquad
    |w_f - w_g| \le \eta\,k\epsilon\,(|m\,v| + |v_g|) + k\epsilon\,(|\eta\,v_g| + |w_g|)

(:math:`v` the state before the step; :func:`corrmom_conformance.oracle.beyond_rounding_bound`,
which the unit tests use too). :math:`k = 0` demands bitwise equality.
Every step of a trajectory is checked this way: the generic twin is
restarted from the fast run's snapshot before each step, so differences
cannot accumulate and hide.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrmom_conformance import oracle
from corrmom_conformance.checks._support import gradients, problem, quiet
from corrmom_conformance.strategies import momenta, schedules, shapes


@pytest.mark.requires("generic_variant", "serialize_npz", "state", "hyperparams")
@given(
    seed=st.integers(0, 2**16),
    steps=st.integers(2, 6),
    m=momenta,
    param_shapes=st.lists(shapes, min_size=1, max_size=4),
    big=st.booleans(),
    data=st.data(),
)
def test_each_fast_step_within_bound_of_generic_step(adapter, seed, steps, m, param_shapes, big, data):
    """Step by step, the fast path stays within the stated rounding bound of the generic path."""
    lrs = data.draw(schedules(steps))
    named = {f"p{i}": shape for i, shape in enumerate(param_shapes)}
    if big:
        named["big"] = (520, 509)  # larger than a cache block: the blocked generic path runs
    params = problem(seed, named)
    grads = gradients(seed, params, steps)
    generic = adapter.generic_variant()
    k = float(adapter.fast_path_roundings)
    fast = adapter.create(params, lr=lrs[0], momentum=m)
    with tempfile.TemporaryDirectory() as tmp, quiet():
        for t, g in enumerate(grads, start=1):
            fast.set_lr(lrs[t - 1])
            before_w, before_v = fast.params(), fast.state()
            twin = generic.create(before_w, lr=lrs[t - 1], momentum=m)
            if t > 1:
                snapshot = str(Path(tmp) / f"step{t}.npz")
                fast.save(snapshot)
                twin.load(snapshot)
            fast.step(g)
            twin.step(g)
            _assert_within(fast, twin, before_v, lrs[t - 1], m, k, t)


def _assert_within(fast, twin, before_v, lr, m, k, t):
    w_f, w_g, v_f, v_g = fast.params(), twin.params(), fast.state(), twin.state()
    for name in w_g:
        where = oracle.beyond_rounding_bound(
            name, (w_f[name], v_f[name]), (w_g[name], v_g[name]), before_v[name], lr, m, k
        )
        if where is not None:
            pytest.fail(f"step {t}, {where}")
