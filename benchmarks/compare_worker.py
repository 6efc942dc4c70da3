"""Worker of :mod:`benchmarks.compare`: ``python -m benchmarks.compare_worker FOLDER IMPL WORKLOAD [--quick]``.

Imports ``corrmom_ref`` from ``FOLDER/src`` (ahead of any installed copy),
builds one step of implementation ``IMPL`` on ``WORKLOAD`` with torch pinned to
one thread as in the benchmark, prints ``ready``, and then for each line ``n``
read from stdin runs ``n`` steps and prints their median time in seconds.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    folder, impl, workload_name = argv[:3]
    quick = "--quick" in argv[3:]
    library = Path(folder) / "src"
    sys.path.insert(0, str(library))
    import corrmom_ref

    if not Path(corrmom_ref.__file__).resolve().is_relative_to(library.resolve()):
        raise SystemExit(f"corrmom_ref was imported from {corrmom_ref.__file__}, not from {library}")
    from benchmarks import measure
    from benchmarks.runners import RUNNERS
    from benchmarks.workloads import workloads

    measure.pin_torch_threads(1)
    (shapes,) = [w.shapes for w in workloads(quick) if w.name == workload_name]
    step = RUNNERS[impl](shapes)
    measure.time_steps(step, 3)  # warm up (JAX compiles here)
    print("ready", flush=True)
    for line in sys.stdin:
        print(statistics.median(measure.time_steps(step, int(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
