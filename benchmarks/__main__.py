"""``python -m benchmarks [--quick] [--chainer-python PATH] [--out DIR]``.

Runs every implementation that imports here on every workload, round-robin
(each round times every implementation once, so drift hits all alike),
measures the streaming bandwidth in the same run, and writes a table to
stdout, ``results.json`` and ``results.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks import measure
from benchmarks.runners import RUNNERS
from benchmarks.workloads import workloads

NUMPY_TRACED = {"numpy in place (plain)", "ref on numpy"}  # tracemalloc sees NumPy's allocations only


def run(quick: bool, chainer_python: str | None, only: list[str] | None) -> dict[str, Any]:
    rounds, reps = (2, 3) if quick else (5, 10)
    bw = measure.bandwidth(1 << (20 if quick else 24), reps=5 if quick else 20)
    print(f"streaming bandwidth (a += b): {bw / 1e9:.1f} GB/s", flush=True)
    results: dict[str, Any] = {}
    for workload in workloads(quick):
        steps, skipped = {}, {}
        for name, factory in RUNNERS.items():
            if only and name not in only:
                continue
            try:
                steps[name] = factory(workload.shapes)
            except ImportError as error:
                skipped[name] = f"not installed: {error.name}"
        times: dict[str, list[float]] = {name: [] for name in steps}
        chainer_times: list[float] = []
        chainer_peak = None
        for r in range(rounds):
            for name, step in steps.items():
                times[name] += measure.time_steps(step, reps)
            if chainer_python:
                out = measure.chainer_round(chainer_python, workload.shapes, reps)
                chainer_times += out["times"]
                chainer_peak = out["peak_extra_bytes"]
            print(f"  {workload.name}: round {r + 1}/{rounds} done", flush=True)
        if chainer_python:
            times["chainer 7.8.1"] = chainer_times
        floor = measure.BYTES_PER_ELEMENT * workload.elements / bw
        rows = {}
        for name, ts in times.items():
            median = statistics.median(ts)
            peak = (
                chainer_peak
                if name == "chainer 7.8.1"
                else (measure.peak_extra_bytes(steps[name]) if name in NUMPY_TRACED else None)
            )
            rows[name] = {
                "median_s": median,
                "spread_s": [min(ts), max(ts)],
                "ratio_to_floor": median / floor,
                "us_per_param": median / len(workload.shapes) * 1e6,
                "peak_extra_MiB": None if peak is None else peak / 2**20,
            }
        results[workload.name] = {
            "elements": workload.elements,
            "params": len(workload.shapes),
            "floor_s": floor,
            "rows": rows,
            "not_run": skipped,
        }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
        "bandwidth_bytes_per_s": bw,
        "quick": quick,
        "workloads": results,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"bandwidth {result['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s; floor = 20 bytes per float32 element"
    ]
    for wname, w in result["workloads"].items():
        lines += [
            "",
            f"{wname}: {w['params']} parameters, {w['elements']:,} elements, floor {w['floor_s'] * 1e3:.2f} ms",
            f"  {'implementation':28} {'median ms':>10} {'x floor':>8} {'us/param':>9} {'extra MiB':>10}",
        ]
        for name, row in sorted(w["rows"].items(), key=lambda kv: kv[1]["median_s"]):
            peak = "n/a" if row["peak_extra_MiB"] is None else f"{row['peak_extra_MiB']:.2f}"
            lines.append(
                f"  {name:28} {row['median_s'] * 1e3:10.2f} {row['ratio_to_floor']:8.2f} "
                f"{row['us_per_param']:9.2f} {peak:>10}"
            )
        for name, why in w["not_run"].items():
            lines.append(f"  {name:28} not run ({why})")
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({n for w in result["workloads"].values() for n in w["rows"]})
    fig, axes = plt.subplots(
        1, len(result["workloads"]), figsize=(5 * len(result["workloads"]), 4), sharey=True
    )
    for ax, (wname, w) in zip(axes, result["workloads"].items(), strict=True):
        values = [w["rows"].get(n, {}).get("ratio_to_floor", 0) for n in names]
        ax.barh(names, values)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"{wname} ({w['params']} params)")
        ax.set_xlabel("step time / 20-byte floor")
    fig.suptitle(f"one optimizer step, {result['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads, few repetitions (smoke test)")
    parser.add_argument("--chainer-python", help="interpreter of a virtualenv with Chainer 7.8.1")
    parser.add_argument("--only", nargs="*", help="run only these implementations")
    parser.add_argument("--out", default="benchmarks", help="folder for results.json and results.png")
    args = parser.parse_args(argv)
    result = run(args.quick, args.chainer_python, args.only)
    print()
    print(table(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    try:
        chart(result, out / "results.png")
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
    print(f"\nwrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
