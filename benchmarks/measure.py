"""Timing, bandwidth and memory measurement."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

BYTES_PER_ELEMENT = 20  # read p, g, v; write p, v (float32)


#: ``XLA_FLAGS`` for XLA on one CPU thread, as NumPy computes and as the benchmarks pin PyTorch:
#: the rows then compare one thread's work, and a shared machine's other load does not reach
#: the XLA rows through a thread pool. Takes effect only if set before JAX is imported.
ONE_XLA_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def pin_torch_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` where torch is installed."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def round_order(names: list[str], round_index: int) -> list[str]:
    """The order in which round ``round_index`` times the rows ``names``: a permutation seeded by
    the round, so that a run repeats and no row always follows the same one. (An order rotated
    by one per round keeps every row behind the same predecessor in every round, and a row
    whose predecessor leaves work behind, such as an undonated XLA step's freed buffers, is
    then slowed in every round alike.)"""
    return random.Random(round_index).sample(names, k=len(names))


def time_steps(step: Callable[[], None], reps: int) -> list[float]:
    """Seconds per call of ``step``, ``reps`` times (after one warm-up call)."""
    step()
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def bandwidth(elements: int, reps: int) -> float:
    """Streaming bandwidth in bytes/s of ``a += b`` (reads 8, writes 4 bytes per float32 element)."""
    a = np.ones(elements, np.float32)
    b = np.ones(elements, np.float32)

    def add() -> None:
        np.add(a, b, out=a)

    return 12 * elements / statistics.median(time_steps(add, reps))


def peak_extra_bytes(step: Callable[[], None]) -> int:
    """Peak memory one step allocates beyond what it holds before (NumPy allocations, via tracemalloc)."""
    step()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def torch_peak_extra_bytes(step: Callable[[], None]) -> int:
    """Peak memory one step allocates through PyTorch's CPU allocator beyond what it holds before.

    tracemalloc does not see that allocator; PyTorch's profiler does
    (``profile_memory=True``): every allocation and free is a ``[memory]``
    event with its size (negative for a free) and time. Their running total, in
    time order, peaks at the answer. (The profiler's ``FunctionEvent`` view
    folds frees into the enclosing call without their times, so the raw events
    are read; a free of a block allocated before the step counts too, which
    can only lower the total after that block's replacement was counted.)
    """
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        step()
    raw = recorded.profiler.kineto_results.events()  # type: ignore[union-attr]
    changes = sorted((event.start_ns(), event.nbytes()) for event in raw if event.name() == "[memory]")
    held = peak = 0
    for _, size in changes:
        held += size
        peak = max(peak, held)
    return peak


def chainer_round(python: str, shapes: list[tuple[int, ...]], reps: int) -> dict:
    """One round of Chainer timings in its own interpreter."""
    worker = Path(__file__).with_name("chainer_worker.py")
    done = subprocess.run(
        [python, str(worker), json.dumps(shapes), str(reps)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
