"""Allreduce overhead per step of the data-parallel optimizer, measured side by side.

Run under MPI, e.g.::

    mpiexec -n 2 python benchmarks/allreduce_overhead.py

For models of a few sizes (float32 parameters), rank 0 prints the median
time of one step of

* ``local``: :class:`~corrmom_ref.CorrectedMomentumSGD` alone, no
  communication (what every rank would do without MPI);
* ``bucketed``: :class:`~corrmom_ref.distributed.MultiNodeOptimizer`, one
  allreduce of a flat buffer per step;
* ``per-param``: one allreduce per parameter, then the same update (the
  naive scheme the bucketing replaces);
* with ``--drift-check``: the multi-node optimizer with and without its
  per-step drift check (:mod:`corrmom_ref.distributed.drift`, carried in
  the gradient allreduce), timed interleaved step by step (each one first in
  every other pair: the first of a pair measured up to 2% slower with both
  sides the same), and the check's cost as a share of the step (with
  ``--control`` both sides run without the check: what the comparison
  reads when there is no difference);

and the ratios to ``local``. The numbers depend on the machine, the MPI
and the ranks sharing cores; only the ratios measured in one run compare.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from mpi4py import MPI

import corrmom_ref as cr
from corrmom_ref import distributed


def make_model(n_params: int, size: int) -> cr.Link:
    rng = np.random.default_rng(0)
    return cr.Link(
        **{f"p{i}": cr.Parameter(rng.normal(size=size).astype(np.float32)) for i in range(n_params)}
    )


def set_grads(model: cr.Link) -> None:
    for p in model.params():
        p.grad = np.full_like(p.array, 1e-3)


def per_param_update(opt: cr.CorrectedMomentumSGD, comm: MPI.Comm) -> None:
    for p in opt.target.params():
        out = np.empty_like(p.grad)
        comm.Allreduce(p.grad, out, op=MPI.SUM)
        p.grad = out / comm.Get_size()
    opt.update()


def median_step_seconds(step, model: cr.Link, comm: MPI.Comm, repeats: int) -> float:
    times = []
    for i in range(repeats + 5):
        set_grads(model)
        comm.Barrier()
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        if i >= 5:  # the first steps allocate state
            times.append(comm.allreduce(elapsed, op=MPI.MAX))
    return statistics.median(times)


def drift_check_share(
    communicator: distributed.MpiCommunicator, n_params: int, size: int, repeats: int, control: bool = False
) -> None:
    """Rank 0 prints the median step with and without the drift check, alternating step by step."""
    comm = communicator.mpi_comm
    models = [make_model(n_params, size) for _ in range(2)]
    with_check, without = (
        distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.01), communicator).setup(m)
        for m in models
    )
    without._drift = None  # the step as it was before the check
    if control:
        with_check._drift = None
    times: dict[str, list[float]] = {"with": [], "without": []}
    pair = (("with", with_check, models[0]), ("without", without, models[1]))
    for i in range(repeats + 5):
        for key, opt, model in pair if i % 2 else pair[::-1]:  # each first in every other pair
            set_grads(model)
            comm.Barrier()
            start = time.perf_counter()
            opt.update()
            elapsed = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
            if i >= 5:
                times[key].append(elapsed)
    if comm.rank == 0:
        t_with, t_without = (statistics.median(times[k]) for k in ("with", "without"))
        print(
            f"{f'{n_params} x {size}':>18} {1e3 * t_without:13.3f} {1e3 * t_with:10.3f} "
            f"{100 * (t_with / t_without - 1):+9.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--drift-check", action="store_true", help="time the drift check instead")
    parser.add_argument("--control", action="store_true", help="with --drift-check: no check on either side")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    communicator = distributed.create_communicator(comm)
    if args.drift_check:
        if comm.rank == 0:
            print(
                f"{comm.size} ranks; {'params x floats':>18} {'no check ms':>13} {'check ms':>10} {'cost':>10}"
            )
        drift_check_share(communicator, 20, 1_000, args.repeats, args.control)
        return
    if comm.rank == 0:
        print(f"{comm.size} ranks, {MPI.Get_library_version().splitlines()[0]}")
        print(
            f"{'params x floats':>18} {'local ms':>9} {'bucketed ms':>12} {'per-param ms':>13} "
            f"{'bucketed/local':>15} {'per-param/local':>16}"
        )
    for n_params, size in [(20, 1_000), (20, 50_000), (200, 5_000), (8, 500_000)]:
        local_model, mn_model, pp_model = (make_model(n_params, size) for _ in range(3))
        local = cr.CorrectedMomentumSGD(lr=0.01).setup(local_model)
        bucketed = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=0.01), communicator)
        bucketed.setup(mn_model)
        naive = cr.CorrectedMomentumSGD(lr=0.01).setup(pp_model)
        t_local = median_step_seconds(local.update, local_model, comm, args.repeats)
        t_bucketed = median_step_seconds(bucketed.update, mn_model, comm, args.repeats)
        t_naive = median_step_seconds(
            lambda naive=naive: per_param_update(naive, comm), pp_model, comm, args.repeats
        )
        if comm.rank == 0:
            print(
                f"{f'{n_params} x {size}':>18} {1e3 * t_local:9.3f} {1e3 * t_bucketed:12.3f} "
                f"{1e3 * t_naive:13.3f} {t_bucketed / t_local:15.2f} {t_naive / t_local:16.2f}"
            )


if __name__ == "__main__":
    main()
