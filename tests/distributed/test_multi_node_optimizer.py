"""MultiNodeOptimizer under real MPI: equivalence, identical ranks, agreed skips, checkpoints.

Run with ``mpiexec -n 2`` and ``-n 3`` (``nox -s distributed``); skipped otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_conformance.distributed import LeastSquares
from corrmom_ref import distributed
from corrmom_ref.lr_policy import LrSchedule, goyal_schedule

OPTIMIZERS = {"corrected": cr.CorrectedMomentumSGD, "uncorrected": cr.MomentumSGD}
#: Warm-up from 0.02 to 4 x 0.02 over 8 steps, decay x0.1 at step 14.
SCHEDULE = goyal_schedule(0.02, batch_size=24, reference_batch_size=6, warmup_iterations=8, boundaries=[14])


def make_model(problem, offset=0.0):
    return cr.Link(**{k: cr.Parameter(v + offset) for k, v in problem.initial().items()})


def step(optimizer, model, problem, t, rows):
    grads = problem.gradient(arrays_of(model), t, rows)
    optimizer.update(lambda: cr.ScriptedLoss({getattr(model, k): g for k, g in grads.items()}))


def arrays_of(model):
    return {name.lstrip("/"): p.array for name, p in model.namedparams()}


def params_of(model):
    return {name: np.array(p.array) for name, p in model.namedparams()}


def fingerprint(model):
    return b"".join(np.ascontiguousarray(p.array).tobytes() for _, p in model.namedparams())


def single_process(problem, name, steps, rows=slice(None)):
    model = make_model(problem)
    opt = OPTIMIZERS[name](momentum=0.9).setup(model)
    opt.add_hook(LrSchedule(SCHEDULE))
    for t in range(steps):
        step(opt, model, problem, t, rows)
    return params_of(model)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_k_ranks_with_batch_b_match_one_process_with_batch_kb(mpi_comm, name):
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    problem = LeastSquares(global_batch=6 * k, steps=20)
    model = make_model(problem, offset=float(rank))  # setup must broadcast rank 0's values
    opt = distributed.create_multi_node_optimizer(OPTIMIZERS[name](momentum=0.9)).setup(model)
    opt.add_hook(LrSchedule(SCHEDULE))
    for t in range(problem.steps):
        step(opt, model, problem, t, slice(6 * rank, 6 * (rank + 1)))
        prints = mpi_comm.allgather(fingerprint(model))
        assert all(p == prints[0] for p in prints), f"ranks differ after step {t + 1}"
    want = single_process(problem, name, problem.steps)
    for key, got in params_of(model).items():
        np.testing.assert_allclose(got, want[key], rtol=1e-10, atol=1e-12)


def test_setup_broadcasts_rank_zero_parameters(mpi_comm):
    problem = LeastSquares()
    model = make_model(problem, offset=float(mpi_comm.Get_rank()))
    distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD()).setup(model)
    for key, got in params_of(model).items():
        np.testing.assert_array_equal(got, problem.initial()[key.lstrip("/")])


def test_overflow_on_one_rank_skips_the_step_on_all(mpi_comm):
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    problem = LeastSquares(global_batch=2 * k, steps=6, dtype="float32")
    model = make_model(problem)
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.01)).setup(model)
    opt.loss_scaling()
    bad_step, bad_rank = 3, k - 1
    for t in range(problem.steps):
        grads = problem.gradient(arrays_of(model), t, slice(2 * rank, 2 * rank + 2))
        if t == bad_step and rank == bad_rank:
            grads["W"][0, 0] = np.inf
        before, scale_before = params_of(model), opt.loss_scale
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.update(lambda grads=grads: cr.ScriptedLoss({getattr(model, n): g for n, g in grads.items()}))
        assert opt.t == t + 1
        skipped = mpi_comm.allgather(all(np.array_equal(before[n], v) for n, v in params_of(model).items()))
        assert skipped == [t == bad_step] * k
        assert mpi_comm.allgather(opt.loss_scale) == [opt.loss_scale] * k
        # Chainer's policy: x2 per step until the first overflow, /2 on it, then x2**(1/1000).
        growth = 0.5 if t == bad_step else (2.0 if t < bad_step else 2.0 ** (1 / 1000))
        assert opt.loss_scale == pytest.approx(scale_before * growth, rel=1e-12)
        prints = mpi_comm.allgather(fingerprint(model))
        assert all(p == prints[0] for p in prints)


def test_checkpoint_from_two_ranks_resumes_on_all_ranks(mpi_comm, shared_dir):
    """Train on ranks {0, 1}, save from rank 0, resume on every rank of the world."""
    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    problem = LeastSquares(global_batch=6, steps=16)  # 6 splits over 2 and 3 ranks
    first, name = 9, "corrected"
    model_file = str(shared_dir / "model.npz")
    opt_file = str(shared_dir / "optimizer.npz")

    pair = mpi_comm.Split(0 if rank < 2 else 1, rank)
    if rank < 2:
        comm2 = distributed.create_communicator(pair)
        model = make_model(problem)
        opt = distributed.create_multi_node_optimizer(OPTIMIZERS[name](momentum=0.9), comm2).setup(model)
        opt.add_hook(LrSchedule(SCHEDULE))
        for t in range(first):
            step(opt, model, problem, t, slice(3 * rank, 3 * rank + 3))
        distributed.save_npz(comm2, model_file, model)
        distributed.save_npz(comm2, opt_file, opt)
    pair.Free()
    mpi_comm.Barrier()

    world = distributed.create_communicator(mpi_comm)
    model = make_model(problem, offset=100.0 + rank)
    opt = distributed.create_multi_node_optimizer(OPTIMIZERS[name](momentum=0.9), world).setup(model)
    opt.add_hook(LrSchedule(SCHEDULE))
    distributed.load_npz(world, model_file, model)
    distributed.load_npz(world, opt_file, opt)
    assert opt.t == first
    b = 6 // k
    for t in range(first, problem.steps):
        step(opt, model, problem, t, slice(b * rank, b * (rank + 1)))
    prints = mpi_comm.allgather(fingerprint(model))
    assert all(p == prints[0] for p in prints)
    want = single_process(problem, name, problem.steps)
    for key, got in params_of(model).items():
        np.testing.assert_allclose(got, want[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
def test_other_backends_go_through_the_host_and_stay_identical(mpi_comm, backend):
    xp = pytest.importorskip(backend)
    from corrmom_ref.serializers._host import to_numpy

    k, rank = mpi_comm.Get_size(), mpi_comm.Get_rank()
    problem = LeastSquares(global_batch=6 * k, steps=12)
    model = cr.Link(**{n: cr.Parameter(xp.asarray(v + rank)) for n, v in problem.initial().items()})
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(momentum=0.9)).setup(model)
    opt.add_hook(LrSchedule(SCHEDULE))
    for t in range(problem.steps):
        host = {n.lstrip("/"): to_numpy(p.array) for n, p in model.namedparams()}
        grads = problem.gradient(host, t, slice(6 * rank, 6 * (rank + 1)))
        opt.update(
            lambda grads=grads: cr.ScriptedLoss({getattr(model, n): xp.asarray(g) for n, g in grads.items()})
        )
        prints = mpi_comm.allgather(b"".join(to_numpy(p.array).tobytes() for _, p in model.namedparams()))
        assert all(p == prints[0] for p in prints), f"ranks differ after step {t + 1}"
    want = single_process(problem, "corrected", problem.steps)
    for name, p in model.namedparams():
        np.testing.assert_allclose(to_numpy(p.array), want[name], rtol=1e-10, atol=1e-12)


def test_one_ranks_verdict_alone_makes_every_rank_skip(mpi_comm, monkeypatch):
    """The agreement itself: rank 0 reports an overflow its neighbours' sums cannot see."""
    from corrmom_ref.distributed import multi_node_optimizer

    rank = mpi_comm.Get_rank()
    if rank == 0:  # as if rank 0 had found a non-finite gradient (its values stay finite)
        monkeypatch.setattr(multi_node_optimizer, "all_finite", lambda grads: False)
    problem = LeastSquares(global_batch=2 * mpi_comm.Get_size(), steps=1)
    model = make_model(problem)
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.1)).setup(model)
    opt.loss_scaling()
    before = params_of(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step(opt, model, problem, 0, slice(2 * rank, 2 * rank + 2))
    unchanged = all(np.array_equal(before[n], v) for n, v in params_of(model).items())
    assert mpi_comm.allgather((unchanged, opt.loss_scale, opt.t)) == [(True, 1.0, 1)] * mpi_comm.Get_size()


def test_a_distributed_snapshot_loads_in_a_single_process(mpi_comm, shared_dir):
    rank = mpi_comm.Get_rank()
    problem = LeastSquares(global_batch=2 * mpi_comm.Get_size(), steps=3)
    model = make_model(problem)
    comm = distributed.create_communicator(mpi_comm)
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(momentum=0.9), comm).setup(model)
    for t in range(problem.steps):
        step(opt, model, problem, t, slice(2 * rank, 2 * rank + 2))
    path = str(shared_dir / "opt.npz")
    distributed.save_npz(comm, path, opt)
    if rank == 0:
        alone = cr.CorrectedMomentumSGD(momentum=0.9).setup(make_model(problem))
        cr.serializers.load_npz(path, alone)
        assert alone.t == problem.steps
        for (_, mine), (_, theirs) in zip(alone.target.namedparams(), model.namedparams(), strict=True):
            np.testing.assert_array_equal(mine.update_rule.state["v"], theirs.update_rule.state["v"])
    mpi_comm.Barrier()
