"""``python -m benchmarks [--quick] [--chainer-python PATH] [--out DIR]``.

Runs every implementation that imports here on every workload in rounds:
each round probes the streaming bandwidth (``a += b``) and then times every
implementation once, in an order shuffled per round
(:func:`benchmarks.measure.round_order`), so drift on a shared machine hits
all alike. Each ratio to the 20-byte floor is taken
against the bandwidth of its own round. Writes a table to stdout,
``results.json`` and ``results.png`` into ``--out``. PyTorch (``--torch-threads``)
and XLA (``XLA_FLAGS``, unless already set) run on one thread, as NumPy does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import measure
from benchmarks.runners import RUNNERS, Step
from benchmarks.targets import targets_table
from benchmarks.workloads import workloads

CHAINER = "chainer 7.8.1"
NUMPY_TRACED = {
    "numpy in place (plain)",
    "ref on numpy",
    "ref on numpy, generic",
    "ref on numpy, flat",
    "ref on numpy, flat, generic",
}  # tracemalloc sees NumPy's allocations only
TORCH_PROFILED = {
    "ref on torch, generic",
    "ref on torch",
    "ref on torch, flat",
    "torch SGD for-loop",
    "torch SGD foreach",
    "torch SGD fused",
    "corrmom_ref.torch",
    "corrmom_ref.torch, generic",
    "torch SGD fused + GradScaler",
    "corrmom_ref.torch + LossScaler",
}  # PyTorch's CPU allocator, seen by its profiler


def run(
    quick: bool, chainer_python: str | None, only: list[str] | None, torch_threads: int | None
) -> dict[str, Any]:
    reps = 3 if quick else 10
    probe_elements, probe_reps = (1 << 20, 3) if quick else (1 << 24, 5)
    if torch_threads is not None:
        measure.pin_torch_threads(torch_threads)
    os.environ.setdefault("XLA_FLAGS", measure.ONE_XLA_THREAD)  # before any runner imports JAX
    bandwidths: list[float] = []
    results: dict[str, Any] = {}
    for workload in workloads(quick):
        timers, skipped = _timers(workload.shapes, reps, chainer_python, only)
        times: dict[str, list[float]] = {name: [] for name in timers}
        round_medians: dict[str, list[float]] = {name: [] for name in timers}
        ratios: dict[str, list[float]] = {name: [] for name in timers}
        floors: list[float] = []
        names = list(timers)
        rounds = 2 if quick else workload.rounds
        for r in range(rounds):
            # Each round probes the bandwidth and times every implementation once,
            # in an order shuffled per round, so that drift on a shared machine and
            # what one row leaves behind for the next hit all alike; ratios are to
            # this round's floor.
            bw = measure.bandwidth(probe_elements, reps=probe_reps)
            bandwidths.append(bw)
            floor = measure.BYTES_PER_ELEMENT * workload.elements / bw
            floors.append(floor)
            for name in measure.round_order(names, r):
                ts = timers[name]()
                times[name] += ts
                round_medians[name].append(statistics.median(ts))
                ratios[name].append(round_medians[name][-1] / floor)
            print(f"  {workload.name}: round {r + 1}/{rounds} done ({bw / 1e9:.1f} GB/s)", flush=True)
        rows = {}
        for name, ts in times.items():
            median = statistics.median(ts)
            rows[name] = {
                "median_s": median,
                "spread_s": [min(ts), max(ts)],
                "round_medians_s": round_medians[name],
                "ratio_to_floor": statistics.median(ratios[name]),
                "ratio_spread": [min(ratios[name]), max(ratios[name])],
                "us_per_param": median / len(workload.shapes) * 1e6,
                "peak_extra_MiB": _peak_extra_mib(name, timers[name]),
            }
        results[workload.name] = {
            "elements": workload.elements,
            "params": len(workload.shapes),
            "floor_s": statistics.median(floors),
            "round_floors_s": floors,
            "rows": rows,
            "not_run": skipped,
        }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
        "torch_threads": torch_threads,
        "xla_flags": os.environ["XLA_FLAGS"],
        "bandwidth_bytes_per_s": statistics.median(bandwidths),
        "bandwidth_spread": [min(bandwidths), max(bandwidths)],
        "quick": quick,
        "workloads": results,
    }


class _Timer:
    """``timer() -> [seconds per step] * reps`` for one implementation, and its peak extra memory."""

    def __init__(self, step: Any, reps: int, memory: Callable[[Step], int] | None) -> None:
        self.step, self.reps, self.memory = step, reps, memory

    def __call__(self) -> list[float]:
        return measure.time_steps(self.step, self.reps)

    def peak_extra_bytes(self) -> int | None:
        if self.memory is not None:
            return self.memory(self.step)
        return getattr(self.step, "peak_extra_bytes", None)  # a jitted step's, from XLA


class _ChainerTimer(_Timer):
    """Real Chainer in its own interpreter: one worker run per round (it reports its own peak)."""

    def __init__(self, python: str, shapes: list[tuple[int, ...]], reps: int) -> None:
        super().__init__(None, reps, memory=None)
        self.python, self.shapes = python, shapes
        self.peak_bytes: int | None = None

    def __call__(self) -> list[float]:
        out = measure.chainer_round(self.python, self.shapes, self.reps)
        self.peak_bytes = out["peak_extra_bytes"]
        return list(out["times"])

    def peak_extra_bytes(self) -> int | None:
        return self.peak_bytes


def _timers(
    shapes: list[tuple[int, ...]], reps: int, chainer_python: str | None, only: list[str] | None
) -> tuple[dict[str, _Timer], dict[str, str]]:
    timers: dict[str, _Timer] = {}
    skipped: dict[str, str] = {}
    for name, factory in RUNNERS.items():
        if only and name not in only:
            continue
        try:
            timers[name] = _Timer(factory(shapes), reps, memory=_memory_tracer(name))
        except ImportError as error:
            skipped[name] = f"not installed: {error.name}"
    if chainer_python and (not only or CHAINER in only):
        timers[CHAINER] = _ChainerTimer(chainer_python, shapes, reps)
    return timers, skipped


def _memory_tracer(name: str) -> Callable[[Step], int] | None:
    """How a row's peak extra memory is seen; None: by XLA's own analysis, or not at all."""
    if name in NUMPY_TRACED:
        return measure.peak_extra_bytes
    if name in TORCH_PROFILED:
        return measure.torch_peak_extra_bytes
    return None


def _peak_extra_mib(name: str, timer: _Timer) -> float | None:
    peak = timer.peak_extra_bytes()
    return None if peak is None else peak / 2**20


def table(result: dict[str, Any]) -> str:
    low, high = result.get("bandwidth_spread", [result["bandwidth_bytes_per_s"]] * 2)
    lines = [
        f"bandwidth {result['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (median of the rounds' probes, "
        f"{low / 1e9:.1f} to {high / 1e9:.1f}); floor = 20 bytes per float32 element",
        "x floor = median over rounds of (step time / that round's floor); range = min to max over rounds",
    ]
    if result.get("torch_threads") is not None:
        lines.append(f"torch threads: {result['torch_threads']}")
    if result.get("xla_flags") is not None:
        lines.append(f"XLA_FLAGS: {result['xla_flags']}")
    for wname, w in result["workloads"].items():
        lines += [
            "",
            f"{wname}: {w['params']} parameters, {w['elements']:,} elements, floor {w['floor_s'] * 1e3:.2f} ms, "
            f"{len(w['round_floors_s'])} rounds",
            f"  {'implementation':28} {'median ms':>10} {'x floor':>8} {'range':>11} {'us/param':>9} {'extra MiB':>10}",
        ]
        for name, row in sorted(w["rows"].items(), key=lambda kv: kv[1]["median_s"]):
            peak = "n/a" if row["peak_extra_MiB"] is None else f"{row['peak_extra_MiB']:.2f}"
            lo, hi = row.get("ratio_spread", [row["ratio_to_floor"]] * 2)
            lines.append(
                f"  {name:28} {row['median_s'] * 1e3:10.2f} {row['ratio_to_floor']:8.2f} "
                f"{f'{lo:.2f}-{hi:.2f}':>11} {row['us_per_param']:9.2f} {peak:>10}"
            )
        for name, why in w["not_run"].items():
            lines.append(f"  {name:28} not run ({why})")
    lines += ["", targets_table(result)]
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path, save: Any = None) -> None:
    """One panel per workload, stacked (7.5 in wide, so a page shows it unscaled).

    ``save(fig, path)`` writes the figure when given (the docs record its text
    size that way), else ``fig.savefig`` at 96 dpi.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    names = sorted({n for w in result["workloads"].values() for n in w["rows"]})
    panels = len(result["workloads"])
    fig, axes = plt.subplots(
        panels, 1, figsize=(7.5, panels * (0.28 * len(names) + 1.1) + 0.8), sharex=True, layout="constrained"
    )
    axes = [axes] if panels == 1 else list(axes)
    for ax, (wname, w) in zip(axes, result["workloads"].items(), strict=True):
        rows = [w["rows"].get(n) for n in names]
        values = [row["ratio_to_floor"] if row else float("nan") for row in rows]
        spreads = [row.get("ratio_spread", [row["ratio_to_floor"]] * 2) if row else [0, 0] for row in rows]
        errors = [
            [max(v - lo, 0) if row else 0 for v, (lo, _), row in zip(values, spreads, rows, strict=True)],
            [max(hi - v, 0) if row else 0 for v, (_, hi), row in zip(values, spreads, rows, strict=True)],
        ]
        ax.barh(names, values, xerr=errors, capsize=2)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{wname} ({w['params']} params)")
    axes[-1].set_xlabel("step time / 20-byte floor (log; bars: range over rounds)")
    fig.suptitle(f"one optimizer step, {result['date']}")
    if save is not None:
        save(fig, path)
    else:
        fig.savefig(path, dpi=96)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads, few repetitions (smoke test)")
    parser.add_argument("--chainer-python", help="interpreter of a virtualenv with Chainer 7.8.1")
    parser.add_argument("--only", nargs="*", help="run only these implementations")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch.set_num_threads for the run (default 1, as NumPy's single thread; 0 leaves torch's default)",
    )
    parser.add_argument("--out", default="benchmarks", help="folder for results.json and results.png")
    args = parser.parse_args(argv)
    result = run(args.quick, args.chainer_python, args.only, args.torch_threads or None)
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
