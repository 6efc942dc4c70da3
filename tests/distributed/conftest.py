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


@pytest.fixture
def shared_dir(mpi_comm):
    """A directory made by rank 0, its path known to every rank, removed after the test.

    (pytest's ``tmp_path`` is per process, and ranks cleaning up the same
    base directory at once race.)
    """
    import shutil
    import tempfile
    from pathlib import Path

    path = mpi_comm.bcast(tempfile.mkdtemp(prefix="corrmom-mpi-") if mpi_comm.Get_rank() == 0 else None)
    yield Path(path)
    mpi_comm.Barrier()
    if mpi_comm.Get_rank() == 0:
        shutil.rmtree(path, ignore_errors=True)
