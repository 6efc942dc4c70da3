"""Start one Python process per rank of a ``torch.distributed`` job (gloo, CPU) and wait for all.

Each rank runs ``python SCRIPT ARGS...`` with ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set, as ``torchrun`` would set them, one
thread each (the development machine has 2 cores). A rank that fails, or a
job that outlives ``timeout`` seconds, fails the test with every rank's output.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def load_worker(script: str) -> ModuleType:
    """The worker script beside this file as a module (its constants and model, for the test's replay)."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, HERE / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stacks_of_hung(procs: list[subprocess.Popen]) -> str:
    """Abort every rank still running (faulthandler prints its threads' stacks); each rank's output."""
    reports = []
    for rank, proc in enumerate(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        reports.append(f"--- rank {rank} (exit {proc.returncode}) ---\n{(out or '')[-3000:]}")
    return "\n".join(reports)


def run_ranks(script: str, world: int, *args: str, timeout: float = 120.0) -> list[str]:
    """Run ``script`` on ``world`` ranks; returns each rank's output (stdout and stderr)."""
    port = str(free_port())
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=str(world))
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT on a hang prints every thread's Python stack
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / script), *args],
            env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world)
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} on {world} ranks hung (killed after {timeout:.0f} s):\n" + _stacks_of_hung(procs))
    for rank, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        if proc.returncode != 0:
            pytest.fail(f"{script} rank {rank} of {world} exited {proc.returncode}:\n{out[-4000:]}")
    return outputs
