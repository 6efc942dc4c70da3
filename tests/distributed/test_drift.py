"""No silent drift: a rank whose numbers change after ``setup()`` makes every rank raise at the next update.

Under real MPI (``mpiexec -n K``, ``nox -s distributed``): the last rank
changes ``lr`` or ``momentum`` (the optimizer's, or one parameter's own
``update_rule.hyperparam``), or loads an older
snapshot by itself with the single-process ``serializers.load_npz``; every
rank must then raise the same ``RuntimeError`` naming that rank and both
values, before anything changes (parameters, gradients, ``t``). Before the
drift check these runs trained on with different parameters on the ranks.
``test_fail_fast.py`` runs the same as whole jobs (non-zero exit status).
"""

from __future__ import annotations

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref import distributed

MESSAGE = "the ranks no longer step with the same numbers"


def model():
    rng = np.random.default_rng(0)
    return cr.Link(W=cr.Parameter(rng.normal(size=(4, 3))), b=cr.Parameter(rng.normal(size=(4,))))


def train(opt, link, steps):
    for _ in range(steps):
        opt.update(lambda: cr.ScriptedLoss({p: p.array * 0.5 for p in link.params()}))


def setup(mpi_comm):
    link = model()
    comm = distributed.create_communicator(mpi_comm)
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9), comm)
    return opt.setup(link), link


def refused_everywhere(mpi_comm, opt, link):
    """The next update raises on every rank; returns the message after checking nothing moved."""
    params = {n: p.array.copy() for n, p in link.namedparams()}
    grads = {p: np.full(p.array.shape, 0.25) for p in link.params()}
    t = opt.t
    with pytest.raises(RuntimeError, match=MESSAGE) as info:
        opt.update(lambda: cr.ScriptedLoss(grads))
    for name, p in link.namedparams():
        np.testing.assert_array_equal(p.array, params[name])
        np.testing.assert_array_equal(p.grad, 0.25)
    assert opt.t == t
    messages = mpi_comm.allgather(str(info.value))
    assert messages == [messages[0]] * mpi_comm.Get_size()
    return messages[0]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("lr", 0.2, "hyperparameter lr = 0.1 on rank 0, 0.2 on rank {bad}"),
        ("momentum", 0.5, "hyperparameter momentum = 0.9 on rank 0, 0.5 on rank {bad}"),
    ],
)
def test_a_hyperparameter_changed_on_one_rank_after_setup(mpi_comm, name, value, expected):
    bad = mpi_comm.Get_size() - 1
    opt, link = setup(mpi_comm)
    train(opt, link, 2)
    if mpi_comm.Get_rank() == bad:
        setattr(opt, name, value)
    message = refused_everywhere(mpi_comm, opt, link)
    assert expected.format(bad=bad) in message
    assert f"of /W = 0.1 on rank 0, {value} on rank {bad}" not in message  # listed once, not per parameter


def test_a_parameters_own_hyperparameter_changed_on_one_rank(mpi_comm):
    bad = mpi_comm.Get_size() - 1
    opt, link = setup(mpi_comm)
    train(opt, link, 2)
    if mpi_comm.Get_rank() == bad:
        link.W.update_rule.hyperparam.lr = 0.2
    message = refused_everywhere(mpi_comm, opt, link)
    assert f"hyperparameter lr of /W = 0.1 on rank 0, 0.2 on rank {bad}" in message
    assert "of /b" not in message


def test_a_parameters_own_override_changed_on_one_rank(mpi_comm):
    """An override every rank set alike, then moved on one rank only."""
    bad = mpi_comm.Get_size() - 1
    opt, link = setup(mpi_comm)
    link.b.update_rule.hyperparam.momentum = 0.5
    train(opt, link, 2)
    if mpi_comm.Get_rank() == bad:
        link.b.update_rule.hyperparam.momentum = 0.25
    message = refused_everywhere(mpi_comm, opt, link)
    assert f"hyperparameter momentum of /b = 0.5 on rank 0, 0.25 on rank {bad}" in message


def test_an_override_equal_to_the_optimizers_value_on_one_rank_trains_on(mpi_comm):
    """The same numbers, held by the rule on one rank and read from the optimizer on the others: no drift."""
    opt, link = setup(mpi_comm)
    train(opt, link, 1)
    if mpi_comm.Get_rank() == mpi_comm.Get_size() - 1:
        link.W.update_rule.hyperparam.lr = 0.1
    train(opt, link, 2)
    assert opt.t == 3


def test_an_older_snapshot_loaded_on_one_rank(mpi_comm, tmp_path):
    bad = mpi_comm.Get_size() - 1
    opt, link = setup(mpi_comm)
    train(opt, link, 2)
    cr.serializers.save_npz(tmp_path / "older.npz", opt)  # each rank its own file
    train(opt, link, 1)
    if mpi_comm.Get_rank() == bad:
        cr.serializers.load_npz(tmp_path / "older.npz", opt)
    message = refused_everywhere(mpi_comm, opt, link)
    assert f"t = 3 on rank 0, 2 on rank {bad}" in message
    assert f"t of /W = 3 on rank 0, 2 on rank {bad}" in message


def test_the_same_change_on_every_rank_trains_on(mpi_comm):
    """A change made everywhere (what LrSchedule does) is no drift."""
    opt, link = setup(mpi_comm)
    train(opt, link, 1)
    opt.lr = 0.05
    link.b.update_rule.hyperparam.momentum = 0.5
    train(opt, link, 2)
    assert opt.t == 3
    prints = mpi_comm.allgather(b"".join(p.array.tobytes() for p in link.params()))
    assert prints == [prints[0]] * mpi_comm.Get_size()


def test_float16_gradients_compare_the_fingerprint_in_a_collective_of_its_own(mpi_comm):
    """float16 cannot hold the sums of squared bytes: the bytes travel apart, with the same verdict."""
    bad = mpi_comm.Get_size() - 1
    link = cr.Link(W=cr.Parameter(np.ones((4, 3), dtype=np.float16)))
    comm = distributed.create_communicator(mpi_comm)
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9), comm)
    opt.setup(link)
    train(opt, link, 2)
    if mpi_comm.Get_rank() == bad:
        link.W.update_rule.hyperparam.lr = 0.2
    with pytest.raises(RuntimeError, match=MESSAGE) as info:
        opt.update(
            lambda: cr.ScriptedLoss({p: np.full(p.array.shape, 0.25, np.float16) for p in link.params()})
        )
    assert f"hyperparameter lr of /W = 0.1 on rank 0, 0.2 on rank {bad}" in str(info.value)
