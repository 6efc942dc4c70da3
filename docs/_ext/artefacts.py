"""Build-time artefacts: the figures, and results other sessions produce.

At ``builder-inited`` this writes into ``docs/_auto/`` (ignored by git):

* ``trajectories.png``, ``loss_scale.png`` and ``distributed_warmup.png``,
  drawn by ``figures/*.py`` from the library (and its MPI example) itself;
* ``conformance-matrix.md``: ``docs/_generated/conformance-matrix.md`` (written
  by the conformance matrix session) when it exists, otherwise a note that no
  results have been generated;
* ``benchmark.md`` (+ ``benchmark.png``): ``benchmarks/results.json`` and its
  chart, drawn again from the numbers at the page's size (``figures/page.py``;
  ``benchmarks/results.png`` when only that exists), otherwise a note saying so.

Nothing here invents a result: an absent artefact is reported as absent.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
AUTO = DOCS / "_auto"
MATRIX = DOCS / "_generated" / "conformance-matrix.md"
BENCH_JSON = ROOT / "benchmarks" / "results.json"
BENCH_PNG = ROOT / "benchmarks" / "results.png"


def draw_figures() -> None:
    """Run each figure script's ``main`` into ``_auto``."""
    sys.path.insert(0, str(DOCS / "figures"))
    import distributed_warmup
    import loss_scale
    import trajectories

    trajectories.main(AUTO)
    loss_scale.main(AUTO)
    distributed_warmup.main(AUTO)


def conformance_matrix() -> str:
    """The matrix session's table, or a plain statement that there is none yet."""
    if MATRIX.exists():
        return MATRIX.read_text(encoding="utf-8")
    return (
        "```{note}\n"
        "No conformance results have been generated in this build: "
        "`docs/_generated/conformance-matrix.md` does not exist. It is written by the "
        "conformance matrix session; this page shows it once it has run.\n"
        "```\n"
    )


def benchmark() -> str:
    """The benchmark's results and chart, or a plain statement that there are none yet."""
    parts = []
    (AUTO / "benchmark.png").unlink(missing_ok=True)
    if BENCH_JSON.exists():  # drawn again from the numbers, at the page's size (figures/page.py)
        sys.path.insert(0, str(DOCS / "figures"))
        import page

        sys.path.insert(0, str(ROOT))
        from benchmarks.__main__ import chart

        with page.style():
            chart(json.loads(BENCH_JSON.read_text(encoding="utf-8")), AUTO / "benchmark.png", save=page.save)
    elif BENCH_PNG.exists():
        shutil.copyfile(BENCH_PNG, AUTO / "benchmark.png")
    if (AUTO / "benchmark.png").exists():
        parts.append(
            "```{image} _auto/benchmark.png\n:alt: benchmark results (benchmarks/results.png)\n```\n"
        )
    if BENCH_JSON.exists():
        results = json.loads(BENCH_JSON.read_text(encoding="utf-8"))
        sys.path.insert(0, str(ROOT))
        from benchmarks.__main__ import table  # the benchmark's own text table

        if results.get("quick"):
            parts.append(
                "```{warning}\nThese results come from a `--quick` smoke run (tiny workloads, few "
                "repetitions): they show that the benchmark runs, not how fast anything is.\n```\n"
            )
        parts.append(
            "The results as the benchmark prints them (`python -m benchmarks`):\n\n```text\n"
            + table(results)
            + "\n```\n\nThe raw numbers, `benchmarks/results.json`:\n\n```json\n"
            + json.dumps(results, indent=2, sort_keys=True)
            + "\n```\n"
        )
    if not parts:
        return (
            "```{note}\n"
            "No benchmark results exist in this build: neither `benchmarks/results.json` nor "
            "`benchmarks/results.png` is present. This page shows them once `nox -s bench` has "
            "produced them.\n"
            "```\n"
        )
    return "\n".join(parts)


def generate(app: Sphinx) -> None:
    """Write every artefact into ``_auto`` (runs once per build)."""
    AUTO.mkdir(exist_ok=True)
    draw_figures()
    (AUTO / "conformance-matrix.md").write_text(conformance_matrix(), encoding="utf-8")
    (AUTO / "benchmark.md").write_text(benchmark(), encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
