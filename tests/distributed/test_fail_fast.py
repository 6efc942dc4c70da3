"""One misbehaving rank ends a real ``mpiexec`` job within seconds, with its message.

Each test launches ``mpiexec -n K python fault_scenarios.py NAME`` (a short
training script in which the last rank raises, exits, builds another model,
and so on; see ``fault_scenarios.py``) and checks the job ends with a
non-zero exit status within :data:`LIMIT` seconds (the job is killed at
:data:`TIMEOUT`) and prints the failing rank's message. Before the fail-fast
wrapper these jobs hung until killed, or (differing ``lr``, transposed or
renamed parameter) trained on and exited 0. (``killed``, a rank ended by
SIGKILL, is ended by ``mpiexec`` itself, before and after.)

These tests start their own MPI jobs, so they run in the serial pass of
``nox -s distributed`` (plain ``pytest``) and skip when pytest itself runs
under ``mpiexec``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().with_name("fault_scenarios.py")
#: Seconds a failing job may take to end (about 1 s on the 2-core development machine).
LIMIT = 30.0
#: Seconds after which a job counts as hung and is killed.
TIMEOUT = 60.0


def _scenarios():
    spec = importlib.util.spec_from_file_location("fault_scenarios", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scenarios = _scenarios()
FAILING = [name for name in scenarios.SCENARIOS if name != "ok"]


@pytest.fixture(autouse=True)
def _needs_mpiexec():
    if any(key in os.environ for key in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        pytest.skip("starts its own mpiexec jobs: runs in the serial pass of `nox -s distributed`")
    pytest.importorskip(
        "mpi4py", reason="mpi4py is not installed: run `nox -s distributed` (mpiexec -n 2 and -n 3)"
    )
    if scenarios.find_mpiexec() is None:
        pytest.skip("needs mpiexec (the `mpich` wheel): run `nox -s distributed`")


def _run(name: str, ranks: int, mpi4py_main: bool = False) -> tuple[int | None, str, float]:
    status, output, seconds = scenarios.run(name, ranks, timeout=TIMEOUT, mpi4py_main=mpi4py_main)
    print(f"{name} on {ranks} ranks: exit {status} after {seconds:.2f} s")
    if status is None:
        pytest.fail(f"{name}: the job hung (killed after {TIMEOUT:.0f} s); output:\n{output[-3000:]}")
    return status, output, seconds


@pytest.mark.parametrize("name", FAILING)
def test_one_failing_rank_ends_the_job_with_its_message(name):
    status, output, seconds = _run(name, 2)
    assert status != 0, f"{name}: the job exited 0; output:\n{output[-3000:]}"
    assert scenarios.SCENARIOS[name].format(bad=1) in output, output[-3000:]
    assert seconds < LIMIT


@pytest.mark.parametrize("name", ["sys_exit", "rank0_catches_failed_load", "transposed_parameter"])
def test_on_three_ranks_the_last_one_is_named(name):
    status, output, seconds = _run(name, 3)
    assert status != 0
    assert scenarios.SCENARIOS[name].format(bad=2) in output, output[-3000:]
    assert seconds < LIMIT


@pytest.mark.parametrize("name", ["raise_before_update", "sys_exit", "ok"])
def test_under_python_m_mpi4py_the_same(name):
    """``mpiexec -n 2 python -m mpi4py train.py``, as the docs suggest: the same ends, one message each."""
    status, output, seconds = _run(name, 2, mpi4py_main=True)
    assert (status == 0) == (name == "ok"), output[-3000:]
    assert scenarios.SCENARIOS[name].format(bad=1) in output, output[-3000:]
    if name == "raise_before_update":  # no second, misleading reason from the rank that waited
        assert "called sys.exit" not in output, output[-3000:]
    assert seconds < LIMIT


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_job_whose_ranks_end_at_different_times_exits_0(ranks):
    """The control: rank 0 ends 2 s after the others, and nobody aborts."""
    status, output, _ = _run("ok", ranks)
    assert status == 0, output[-3000:]
    for rank in range(ranks):
        assert f"rank {rank}: trained 3 steps" in output
    assert "aborting" not in output
