"""The data-parallel warm-up figure: ``examples/distributed_warmup.py`` on 2 ranks, computed serially.

The example's :func:`train_serial` takes the steps that 2 MPI ranks take
together (one process on their concatenated batches), so the figure needs
no MPI at build time; the plot is the example's own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import page

RANKS, STEPS, BASE_LR = 2, 300, 0.1
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed_warmup.py"


def _example():
    spec = importlib.util.spec_from_file_location("distributed_warmup_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(out: Path) -> None:
    """Draw the figure into ``out / 'distributed_warmup.png'``."""
    example = _example()
    schedule = example.schedule_for(RANKS, STEPS, BASE_LR)
    runs, distance = example.compare(
        lambda optimizer_class, schedule, steps: example.train_serial(
            optimizer_class, RANKS, schedule, steps
        ),
        schedule,
        STEPS,
    )
    with page.style():
        example.plot(
            str(out / "distributed_warmup.png"),
            [schedule(t) for t in range(STEPS)],
            runs,
            distance,
            save=page.save,
        )
