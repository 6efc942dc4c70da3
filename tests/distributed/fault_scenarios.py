"""Training scripts that go wrong on one rank, run by ``test_fail_fast.py`` as real MPI jobs.

Run one as a user would: ``mpiexec -n 2 python tests/distributed/fault_scenarios.py NAME``;
``python tests/distributed/fault_scenarios.py --times`` runs every scenario
that way and prints how long each job took to end, and its exit status.
Each scenario is a short data-parallel training loop (a least-squares model,
a few steps of :class:`~corrmom_ref.CorrectedMomentumSGD` wrapped by
:func:`~corrmom_ref.distributed.create_multi_node_optimizer`) in which one rank
does something the others do not. ``ok`` is the control: nothing goes wrong
(rank 0 takes 2 s longer to finish than the others, as a rank writing a plot
would), and the job must end with exit status 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import corrmom_ref as cr
from corrmom_ref import distributed

STEPS = 3
#: Each scenario, with what its output must say (``{bad}``: the misbehaving rank).
SCENARIOS = {
    "ok": "rank {bad}: trained 3 steps",
    "raise_before_update": "rank {bad}: the data loader failed before update()",
    "raise_in_hook": "rank {bad}: the hook failed",
    "bigger_model": "parameter /W: (4, 3) float64 on rank 0, (5, 3) float64 on rank {bad}",
    "smaller_model": "parameter /W: (4, 3) float64 on rank 0, (2, 3) float64 on rank {bad}",
    "extra_parameter": "parameter /c on rank {bad} only (not on rank 0)",
    "other_dtype": "parameter /W: (4, 3) float64 on rank 0, (4, 3) float32 on rank {bad}",
    "local_load_missing_file": "FileNotFoundError",
    "load_missing_file": "FileNotFoundError",
    "sys_exit": "rank {bad} of this communicator ended (its script returned or called sys.exit)",
    "killed": "EXIT STRING: Killed (signal 9)",
    "rank0_catches_failed_load": "rank 0 could not read the snapshot",
    "rank0_catches_failed_save": "rank 0 could not write the snapshot",
    "lr_differs": "hyperparameter lr = 0.1 on rank 0, 0.2 on rank {bad}",
    "transposed_parameter": "parameter /W: (4, 3) float64 on rank 0, (3, 4) float64 on rank {bad}",
    "renamed_parameter": "parameter /W on rank 0 only (not on rank {bad}); parameter /V on rank {bad} only",
    "lr_changed_after_setup": "hyperparameter lr = 0.1 on rank 0, 0.2 on rank {bad}",
    "momentum_changed_after_setup": "hyperparameter momentum = 0.9 on rank 0, 0.5 on rank {bad}",
    "other_snapshot_loaded": "t = 3 on rank 0, 2 on rank {bad}",
}


def model_for(rank: int, scenario: str, bad: int) -> cr.Link:
    """The model: W (4, 3) and b (4,) in float64, unless the scenario changes it on the last rank."""
    rng = np.random.default_rng(0)
    shapes = {"W": (4, 3), "b": (4,)}
    dtype = np.float64
    odd = rank == bad
    if odd and scenario == "bigger_model":
        shapes["W"] = (5, 3)
    elif odd and scenario == "smaller_model":
        shapes["W"] = (2, 3)
    elif odd and scenario == "extra_parameter":
        shapes["c"] = (2,)
    elif odd and scenario == "transposed_parameter":
        shapes["W"] = (3, 4)
    elif odd and scenario == "renamed_parameter":
        shapes = {"V": shapes["W"], "b": shapes["b"]}
    elif odd and scenario == "other_dtype":
        dtype = np.float32
    return cr.Link(
        **{name: cr.Parameter(rng.normal(size=shape).astype(dtype)) for name, shape in shapes.items()}
    )


def train(opt: distributed.MultiNodeOptimizer, model: cr.Link, steps: int = STEPS) -> None:
    for _ in range(steps):
        grads = {param: param.array * 0.5 for param in model.params()}
        opt.update(lambda grads=grads: cr.ScriptedLoss(grads))


def drift_after_setup(scenario: str, opt: distributed.MultiNodeOptimizer, model: cr.Link, odd: bool) -> None:
    """One rank changes a hyperparameter, or loads another snapshot by itself, after setup."""
    if scenario == "lr_changed_after_setup" and odd:
        opt.lr = 0.2
    if scenario == "momentum_changed_after_setup" and odd:
        opt.momentum = 0.5
    if scenario == "other_snapshot_loaded":  # every rank saves its own; the last one loads an older one
        train(opt, model, steps=2)
        older = os.path.join(tempfile.gettempdir(), f"corrmom-older-{os.getpid()}.npz")
        cr.serializers.save_npz(older, opt)
        train(opt, model, steps=1)
        if odd:
            cr.serializers.load_npz(older, opt)
        os.remove(older)


def main(scenario: str) -> None:
    comm = distributed.create_communicator()
    rank = comm.rank
    bad = comm.size - 1  # the rank that misbehaves: the last one
    lr = 0.2 if scenario == "lr_differs" and rank == bad else 0.1
    model = model_for(rank, scenario, bad)
    opt = distributed.create_multi_node_optimizer(cr.CorrectedMomentumSGD(lr=lr, momentum=0.9), comm)
    opt.setup(model)
    missing = os.path.join(tempfile.gettempdir(), f"corrmom-no-such-snapshot-{os.getpid()}.npz")

    if scenario == "raise_before_update" and rank == bad:
        raise RuntimeError(f"rank {rank}: the data loader failed before update()")
    if scenario == "raise_in_hook":

        def hook(optimizer: object) -> None:
            if rank == bad:
                raise RuntimeError(f"rank {rank}: the hook failed")

        opt.add_hook(hook, name="failing_hook")
    if scenario == "sys_exit" and rank == bad:
        sys.exit(0)
    if scenario == "killed" and rank == bad:  # as the kernel's OOM killer would
        os.kill(os.getpid(), signal.SIGKILL)
    if scenario == "local_load_missing_file":  # every rank reads its own copy; one is missing
        path = missing if rank == bad else None
        if path is not None:
            cr.serializers.load_npz(path, model)
    if scenario == "load_missing_file":  # rank 0 reads, nobody catches
        distributed.load_npz(comm, missing, model)
    if scenario == "rank0_catches_failed_load":
        try:
            distributed.load_npz(comm, missing, model)
        except Exception as error:
            if rank != 0:
                raise
            print(f"rank 0: load failed ({error}); training on from scratch", flush=True)
    if scenario == "rank0_catches_failed_save":
        target = os.path.join(missing + ".d", "no-such-directory", "model.npz")
        try:
            distributed.save_npz(comm, target, model)
        except Exception as error:
            if rank != 0:
                raise
            print(f"rank 0: save failed ({error}); training on", flush=True)
    if scenario in ("lr_changed_after_setup", "momentum_changed_after_setup", "other_snapshot_loaded"):
        drift_after_setup(scenario, opt, model, rank == bad)
    train(opt, model)
    if scenario == "ok" and rank == 0:
        time.sleep(2.0)  # a rank that finishes later than the others (writing a plot, say)
    print(f"rank {rank}: trained {opt.t} steps", flush=True)


def find_mpiexec() -> str | None:
    """The ``mpiexec`` beside this Python (a virtualenv with the ``mpich`` wheel), else on ``PATH``."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def run(
    scenario: str, ranks: int = 2, timeout: float = 60.0, mpi4py_main: bool = False
) -> tuple[int | None, str, float]:
    """``mpiexec -n ranks python this_file scenario``: (exit status or ``None`` if killed at ``timeout``, output, seconds).

    With ``mpi4py_main`` the script runs as ``python -m mpi4py this_file``.
    The job runs in its own process group, killed as a whole at ``timeout``
    (and ``MPIEXEC_TIMEOUT`` tells mpiexec the same), so a hang costs
    ``timeout`` seconds, never more.
    """
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise FileNotFoundError("mpiexec not found beside the Python executable nor on PATH")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PMI_", "HYDRA_", "OMPI_"))}
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    env["MPIEXEC_TIMEOUT"] = str(int(timeout))
    python = [sys.executable, "-m", "mpi4py"] if mpi4py_main else [sys.executable]
    command = [mpiexec, "-n", str(ranks), *python, str(Path(__file__).resolve()), scenario]
    start = time.monotonic()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True
    ) as job:
        try:
            output, _ = job.communicate(timeout=timeout)
            status: int | None = job.returncode
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            output, _ = job.communicate()
            status = None
    return status, output, time.monotonic() - start


def print_times(ranks: int = 2) -> None:
    """Run every scenario on ``ranks`` ranks; print exit status and seconds to the end of the job."""
    for scenario in SCENARIOS:
        status, output, seconds = run(scenario, ranks)
        said = SCENARIOS[scenario].format(bad=ranks - 1) in output
        print(
            f"{scenario:28s} exit {status!s:>4}  {seconds:6.2f} s  message {'found' if said else 'MISSING'}"
        )


if __name__ == "__main__":
    if sys.argv[1] == "--times":
        print_times(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    else:
        main(sys.argv[1])
