"""A refused multi-node update leaves the gradients as they were (issue 12, item 6).

Run with ``mpiexec -n 2`` and ``-n 3`` (``nox -s distributed``); skipped otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref import distributed


def test_refused_update_leaves_gradients_unaveraged(mpi_comm):
    """Every rank refuses a bad ``lr``: the gradients are not averaged in place first
    (rank 0's 2.0 used to become 1.5 beside a rank holding 1.0); a valid step still averages."""
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    W = cr.Parameter(np.zeros(3, np.float32))
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.5)).setup(cr.Link(W=W))
    own = 2.0 if rank == 0 else 1.0
    W.grad = np.full(3, own, np.float32)
    opt.lr = -1.0  # the same bad value on every rank: all refuse, none waits in a collective
    with pytest.raises(ValueError, match=r"parameter /W: hyperparameter 'lr'"):
        opt.update()
    np.testing.assert_array_equal(W.grad, np.full(3, own, np.float32))
    assert opt.t == 0 and W.update_rule.t == 0
    np.testing.assert_array_equal(W.array, np.zeros(3, np.float32))
    opt.lr = 0.5
    opt.update()
    np.testing.assert_array_equal(W.grad, np.full(3, (2.0 + (k - 1)) / k, np.float32))
    assert mpi_comm.allgather(W.array.tobytes()) == [W.array.tobytes()] * k
