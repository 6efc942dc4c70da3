"""The setup check: ranks that differ in model or optimizer are refused at setup, naming the rank.

The first tests feed :func:`check_same_setup` the descriptions of several
ranks through a stand-in communicator (no MPI needed); the last ones run it
under real MPI (``mpiexec -n K``, ``nox -s distributed``), where every rank
must raise the same error, so none waits for another.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref import distributed
from corrmom_ref.distributed.agreement import check_same_setup, describe_setup


class Gathered:
    """Stands in for a communicator: ``allgather_bytes`` returns the given ranks' descriptions."""

    def __init__(self, *setups):
        self.setups = setups

    def allgather_bytes(self, data, what=""):
        return [json.dumps(describe_setup(opt, link), sort_keys=True).encode() for opt, link in self.setups]


def setup_of(lr=0.1, cls=cr.CorrectedMomentumSGD, **shapes):
    """An optimizer and a link with parameters ``name=shape`` (float64; ``(shape, "float32")`` for float32)."""
    shapes = shapes or {"W": (4, 3), "b": (4,)}
    params = {}
    for name, shape in shapes.items():
        shape, dtype = shape if isinstance(shape[0], tuple) else (shape, "float64")
        params[name] = cr.Parameter(np.zeros(shape, dtype=dtype))
    return cls(lr=lr, momentum=0.9), cr.Link(**params)


class InOrder:
    """A target whose ``namedparams()`` come in the given order (a Link sorts them by name)."""

    def __init__(self, **params):
        self.named = [(f"/{name}", cr.Parameter(np.zeros(shape))) for name, shape in params.items()]

    def namedparams(self):
        return iter(self.named)


def refused(*setups):
    opt, link = setups[0]
    with pytest.raises(ValueError, match="the ranks do not set up the same training") as info:
        check_same_setup(Gathered(*setups), opt, link)
    return str(info.value)


def test_the_same_setup_on_every_rank_passes():
    check_same_setup(Gathered(setup_of(), setup_of(), setup_of()), *setup_of())


def test_equal_values_of_other_python_types_pass():
    opt, link = setup_of()
    opt.lr = np.float64(0.1)  # the same rate as 0.1
    check_same_setup(Gathered(setup_of(), (opt, link)), *setup_of())


def test_a_differing_lr_names_the_rank_and_both_values():
    message = refused(setup_of(), setup_of(), setup_of(lr=0.2))
    assert "rank 2 differs from rank 0: hyperparameter lr = 0.1 on rank 0, 0.2 on rank 2" in message
    assert "rank 1" not in message


def test_a_transposed_parameter_is_refused():
    message = refused(setup_of(), setup_of(W=(3, 4), b=(4,)))
    assert "parameter /W: (4, 3) float64 on rank 0, (3, 4) float64 on rank 1" in message


def test_a_renamed_parameter_is_refused():
    message = refused(setup_of(), setup_of(V=(4, 3), b=(4,)))
    assert (
        "parameter /W on rank 0 only (not on rank 1); parameter /V on rank 1 only (not on rank 0)" in message
    )


def test_another_dtype_is_refused():
    message = refused(setup_of(), setup_of(W=((4, 3), "float32"), b=(4,)))
    assert "parameter /W: (4, 3) float64 on rank 0, (4, 3) float32 on rank 1" in message


def test_another_optimizer_is_refused():
    message = refused(setup_of(), setup_of(cls=cr.MomentumSGD))
    assert "optimizer CorrectedMomentumSGD on rank 0, MomentumSGD on rank 1" in message


def test_the_same_parameters_in_another_order_are_refused():
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9)
    message = refused((opt, InOrder(W=(4, 3), b=(4,))), (opt, InOrder(b=(4,), W=(4, 3))))
    assert "the parameters come in another order on rank 1" in message


def test_every_differing_rank_is_listed():
    message = refused(setup_of(), setup_of(lr=0.3), setup_of(), setup_of(W=(4, 4), b=(4,)))
    assert "rank 1 differs from rank 0: hyperparameter lr = 0.1 on rank 0, 0.3 on rank 1" in message
    assert (
        "rank 3 differs from rank 0: parameter /W: (4, 3) float64 on rank 0, (4, 4) float64 on rank 3"
        in message
    )
    assert "rank 2" not in message


# -- under MPI -------------------------------------------------------------


def test_every_rank_raises_the_same_error_at_setup(mpi_comm):
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    lr = 0.5 if rank == k - 1 else 0.1
    model = cr.Link(W=cr.Parameter(np.zeros((4, 3))))
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=lr))
    with pytest.raises(ValueError) as info:
        opt.setup(model)
    messages = mpi_comm.allgather(str(info.value))
    assert messages == [messages[0]] * k
    assert f"hyperparameter lr = 0.1 on rank 0, 0.5 on rank {k - 1}" in messages[0]
    assert opt.target is None  # the wrapped optimizer was not set up


def test_wrapping_an_optimizer_already_set_up_checks_too(mpi_comm):
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    shape = (3, 4) if rank == k - 1 else (4, 3)
    inner = cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(W=cr.Parameter(np.zeros(shape))))
    with pytest.raises(
        ValueError, match=f"parameter /W: \\(4, 3\\) float64 on rank 0, \\(3, 4\\) float64 on rank {k - 1}"
    ):
        distributed.create_multi_node_optimizer(inner)


def test_setup_with_the_same_model_still_broadcasts(mpi_comm):
    rank = mpi_comm.Get_rank()
    model = cr.Link(W=cr.Parameter(np.full((4, 3), float(rank))))
    distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.1)).setup(model)
    np.testing.assert_array_equal(model.W.array, np.zeros((4, 3)))


def test_a_failed_snapshot_read_raises_on_every_rank(mpi_comm, shared_dir):
    rank = mpi_comm.Get_rank()
    comm = distributed.create_communicator(mpi_comm)
    model = cr.Link(W=cr.Parameter(np.zeros((4, 3))))
    missing = str(shared_dir / "missing.npz")
    expected = FileNotFoundError if rank == 0 else RuntimeError
    with pytest.raises(expected, match=r"missing\.npz"):
        distributed.load_npz(comm, missing, model)
    comm.barrier()  # every rank is still in step


def test_a_failed_snapshot_write_raises_on_every_rank(mpi_comm, shared_dir):
    rank = mpi_comm.Get_rank()
    comm = distributed.create_communicator(mpi_comm)
    model = cr.Link(W=cr.Parameter(np.zeros((4, 3))))
    target = str(shared_dir / "no-such-directory" / "model.npz")
    expected = OSError if rank == 0 else RuntimeError
    with pytest.raises(expected):
        distributed.save_npz(comm, target, model)
    comm.barrier()


def test_a_load_that_fails_on_one_rank_raises_on_every_rank(mpi_comm, shared_dir):
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    comm = distributed.create_communicator(mpi_comm)
    path = str(shared_dir / "model.npz")
    distributed.save_npz(comm, path, cr.Link(W=cr.Parameter(np.ones((4, 3)))))
    shape = (3, 4) if rank == k - 1 else (4, 3)  # the last rank's object cannot take the snapshot
    model = cr.Link(W=cr.Parameter(np.zeros(shape)))
    if rank == k - 1:
        with pytest.raises(ValueError):
            distributed.load_npz(comm, path, model)
        np.testing.assert_array_equal(model.W.array, np.zeros(shape))  # its own load changed nothing
    else:
        with pytest.raises(RuntimeError, match=f"did not load on every rank \\(rank {k - 1}: SnapshotError"):
            distributed.load_npz(comm, path, model)
    comm.barrier()
