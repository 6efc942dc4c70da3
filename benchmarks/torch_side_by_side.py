"""``python -m benchmarks.torch_side_by_side [WORKLOAD,...] [REPS]``: issue 22's torch rows as ratios.

Each pair (``corrmom_ref.torch`` default / ``torch.optim.SGD(fused=True)``, and
the same with ``LossScaler`` / ``torch.amp.GradScaler``) is timed in one
process, single-threaded, in 5 interleaved rounds (the order shuffled per
round, :func:`benchmarks.measure.round_order`, so drift on a shared machine
hits all rows alike); each round
takes the median of ``REPS`` steps (default 10) and a ratio is the median
over the rounds of ours / theirs.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks import runners
from benchmarks.measure import round_order
from benchmarks.workloads import workloads

PAIRS = [
    ("corrmom_ref.torch", "torch SGD fused"),
    ("corrmom_ref.torch + LossScaler", "torch SGD fused + GradScaler"),
]
ROUNDS = 5


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    only = argv[0].split(",") if argv else None
    reps = int(argv[1]) if len(argv) > 1 else 10
    names = [name for pair in PAIRS for name in pair]
    for workload in workloads(False):
        if only and workload.name not in only:
            continue
        steps = {name: runners.RUNNERS[name](workload.shapes) for name in names}
        times: dict[str, list[float]] = {name: [] for name in names}
        for step in steps.values():
            step()
        for r in range(ROUNDS):
            for name in round_order(names, r):
                ts = []
                for _ in range(reps):
                    start = time.perf_counter()
                    steps[name]()
                    ts.append(time.perf_counter() - start)
                times[name].append(statistics.median(ts))
        for ours, theirs in PAIRS:
            ratios = sorted(a / b for a, b in zip(times[ours], times[theirs], strict=True))
            a, b = statistics.median(times[ours]), statistics.median(times[theirs])
            print(
                f"{workload.name:9} {ours:32} {a * 1e3:8.2f} ms / {b * 1e3:8.2f} ms = "
                f"{statistics.median(ratios):.2f} (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
