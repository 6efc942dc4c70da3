r"""Hypothesis strategies: learning-rate schedules, momenta, shapes, dtypes.

The schedules include the paper's (Goyal et al. 2017, sec. 2.2 and 5):
gradual warm-up from :math:`\eta/k` to :math:`\eta` over a few steps, and step
decay by 10. Only a changing learning rate tells eq. (9) from uncorrected
eq. (10), so most draws change it.
"""

from __future__ import annotations

from hypothesis import strategies as st

momenta = st.sampled_from([0.0, 0.5, 0.9, 0.99])
base_lrs = st.sampled_from([0.5, 0.1, 0.01])
shapes = st.sampled_from([(), (1,), (3,), (2, 3), (4, 1, 2)])


def warmup(lr: float, steps: int, warmup_steps: int) -> list[float]:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr``, then constant."""
    return [lr * min(1.0, (i + 1) / warmup_steps) for i in range(steps)]


def step_decay(lr: float, steps: int, every: int) -> list[float]:
    """``lr`` divided by 10 every ``every`` steps."""
    return [lr * 0.1 ** (i // every) for i in range(steps)]


@st.composite
def schedules(draw: st.DrawFn, steps: int) -> list[float]:
    """A learning rate per step: constant, warm-up, step decay, warm-up then decay, or random."""
    lr = draw(base_lrs)
    kind = draw(st.sampled_from(["constant", "warmup", "decay", "warmup+decay", "random"]))
    if kind == "constant":
        return [lr] * steps
    if kind == "warmup":
        return warmup(lr, steps, draw(st.integers(2, max(2, steps))))
    if kind == "decay":
        return step_decay(lr, steps, draw(st.integers(1, max(1, steps // 2))))
    if kind == "warmup+decay":
        w = draw(st.integers(2, max(2, steps // 2)))
        decayed = step_decay(lr, steps - w, max(1, (steps - w) // 2))
        return warmup(lr, w, w) + decayed
    return draw(st.lists(st.sampled_from([0.5, 0.2, 0.1, 0.05, 0.01]), min_size=steps, max_size=steps))
