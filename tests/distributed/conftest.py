"""MPI tests run only under ``mpiexec -n K`` with K >= 2 (``nox -s distributed``).

In a plain ``pytest`` run (no mpi4py, or a single process) every test in a
module that uses the ``mpi_comm`` fixture is skipped with the reason.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def mpi_comm():
    try:
        from mpi4py import MPI
    except ImportError:
        pytest.skip("mpi4py is not installed: run `nox -s distributed` (mpiexec -n 2 and -n 3)")
    if MPI.COMM_WORLD.Get_size() < 2:
        pytest.skip("needs >= 2 MPI ranks: run under `mpiexec -n K` (nox -s distributed)")
    return MPI.COMM_WORLD
