r"""The k-ranks-versus-one-process equivalence, with an independent NumPy oracle.

Problem: linear least squares, :math:`\ell(W, c; x, y) = \tfrac12\lVert Wx + c - y\rVert^2`,
fresh data every step. The mean gradient over a set :math:`S` of examples is

.. math::

    g_W = \frac{1}{|S|} R^\top X_S, \qquad g_c = \frac{1}{|S|} \sum_{i \in S} R_i,
    \qquad R = X_S W^\top + c - Y_S.

Rank :math:`r` of :math:`k` takes rows :math:`[rb, (r+1)b)` of each step's
batch of :math:`kb`. The oracle takes all rows and applies eq. (9)
(``'corrected'``) or eq. (10) (``'uncorrected'``) of Goyal et al. written out
here, not taken from the code under test. The two agree up to the order of
floating-point additions in the mean, hence a tolerance; the ranks among
themselves must agree bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corrmom_conformance import oracle
from corrmom_conformance.distributed.protocol import DistributedFactory

__all__ = ["EquivalenceReport", "LeastSquares", "check_data_parallel_equivalence", "oracle_trajectory"]


@dataclass(frozen=True)
class LeastSquares:
    """Seeded data and initial values of the least-squares problem."""

    n_in: int = 6
    n_out: int = 3
    global_batch: int = 12
    steps: int = 30
    seed: int = 0
    dtype: str = "float64"

    def initial(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return {
            "W": rng.normal(size=(self.n_out, self.n_in)).astype(self.dtype),
            "c": rng.normal(size=(self.n_out,)).astype(self.dtype),
        }

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, step))
        x = rng.normal(size=(self.global_batch, self.n_in)).astype(self.dtype)
        y = rng.normal(size=(self.global_batch, self.n_out)).astype(self.dtype)
        return x, y

    def gradient(self, params: dict[str, np.ndarray], step: int, rows: slice) -> dict[str, np.ndarray]:
        x, y = self.batch(step)
        x, y = x[rows], y[rows]
        residual = x @ params["W"].T + params["c"] - y
        n = x.shape[0]
        return {
            "W": (residual.T @ x / n).astype(self.dtype),
            "c": (residual.sum(axis=0) / n).astype(self.dtype),
        }


def oracle_trajectory(
    problem: LeastSquares, optimizer: str, momentum: float, lrs: Sequence[float]
) -> list[dict[str, np.ndarray]]:
    """Parameters after each step of one process with the whole batch."""
    params = problem.initial()
    buffers = {k: np.zeros_like(v) for k, v in params.items()}
    dtype = np.dtype(problem.dtype).type
    m = dtype(momentum)
    out = []
    for step, lr_value in enumerate(lrs):
        lr = dtype(lr_value)
        grads = problem.gradient(params, step, slice(None))
        for k in params:
            if optimizer == "corrected":  # eq. (9): u <- m u + g; w <- w - lr u
                params[k], buffers[k] = oracle.eq9_step(params[k], buffers[k], grads[k], lr, m)
            elif optimizer == "uncorrected":  # eq. (10): v <- m v + lr g; w <- w - v
                params[k], buffers[k] = oracle.eq10_step(params[k], buffers[k], grads[k], lr, m)
            else:
                raise ValueError(f"unknown optimizer {optimizer!r}")
        out.append({k: v.copy() for k, v in params.items()})
    return out


@dataclass(frozen=True)
class EquivalenceReport:
    """What :func:`check_data_parallel_equivalence` measured."""

    ranks: int
    per_rank_batch: int
    steps: int
    max_abs_error: float
    max_rel_error: float
    bitwise_identical_across_ranks: bool


def check_data_parallel_equivalence(
    factory: DistributedFactory,
    mpi_comm: Any,
    optimizer: str = "corrected",
    *,
    problem: LeastSquares | None = None,
    momentum: float = 0.9,
    schedule: Callable[[int], float] | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> EquivalenceReport:
    """Run ``factory``'s adapter on every rank of ``mpi_comm`` and compare with the oracle.

    Collective: every rank must call it. Raises ``AssertionError`` (on every
    rank alike) if the ranks ever differ bitwise or the final parameters are
    not within ``rtol``/``atol`` of the oracle's at any step.
    """
    problem = problem or LeastSquares()
    schedule = schedule or (lambda t: 0.05 * min(1.0, (t + 1) / 10))  # a warm-up: lr changes
    size, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    if problem.global_batch % size:
        raise ValueError(f"global batch {problem.global_batch} does not split over {size} ranks")
    b = problem.global_batch // size
    rows = slice(rank * b, (rank + 1) * b)
    lrs = [schedule(t) for t in range(problem.steps)]
    expected = oracle_trajectory(problem, optimizer, momentum, lrs)

    adapter = factory(optimizer, momentum, mpi_comm)
    initial = problem.initial()
    if rank != 0:  # rank 0's values must win the setup broadcast
        initial = {k: v + 1.0 for k, v in initial.items()}
    adapter.setup(initial)
    identical, max_abs, max_rel = True, 0.0, 0.0
    for step, lr in enumerate(lrs):
        adapter.step(functools.partial(problem.gradient, step=step, rows=rows), lr)
        got = adapter.params()
        fingerprint = b"".join(np.ascontiguousarray(got[k]).tobytes() for k in sorted(got))
        identical &= all(f == fingerprint for f in mpi_comm.allgather(fingerprint))
        ok = True
        for k, want in expected[step].items():
            diff = np.abs(got[k].astype(np.float64) - want.astype(np.float64))
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(want), np.finfo(want.dtype).tiny)).max()))
            ok &= bool(np.allclose(got[k], want, rtol=rtol, atol=atol))
        ok = all(mpi_comm.allgather(ok))
        assert ok, (
            f"step {step}: {optimizer} on {size} ranks left the one-process oracle (max abs {max_abs:g})"
        )
    assert identical, "ranks do not hold bitwise-identical parameters"
    return EquivalenceReport(size, b, problem.steps, max_abs, max_rel, identical)
