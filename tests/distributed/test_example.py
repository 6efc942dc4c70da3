"""``examples/distributed_warmup.py`` under MPI, and its serial twin that draws the docs figure.

The documentation's figure comes from the example's ``train_serial`` (one
process on the ranks' concatenated batches); this checks that it takes the
steps the ranks take together. Run with ``mpiexec -n K`` (``nox -s distributed``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from corrmom_ref import distributed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed_warmup.py"
STEPS = 60


def _example():
    spec = importlib.util.spec_from_file_location("distributed_warmup_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serial_twin_takes_the_ranks_steps(mpi_comm):
    example = _example()
    comm = distributed.create_communicator()
    k = mpi_comm.Get_size()
    schedule = example.schedule_for(k, STEPS, 0.1)
    on_ranks, distance = example.compare(
        lambda cls, schedule, steps: example.train(cls, comm, schedule, steps), schedule, STEPS
    )
    serial, serial_distance = example.compare(
        lambda cls, schedule, steps: example.train_serial(cls, k, schedule, steps), schedule, STEPS
    )
    for label in on_ranks:
        (losses, params), (want_losses, want_params) = on_ranks[label], serial[label]
        np.testing.assert_allclose(losses, want_losses, rtol=1e-9, err_msg=label)
        np.testing.assert_allclose(params, want_params, rtol=1e-9, atol=1e-12, err_msg=label)
    np.testing.assert_allclose(distance, serial_distance, rtol=1e-7, atol=1e-12)
    assert distance[STEPS // 6] > 10 * distance[1] > 0  # the warm-up drives eq. (9) and (10) apart
