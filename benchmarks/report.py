"""The run's results as a stdout table, a JSON file and a bar chart of ratios to the floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.bandwidth import PROBE_BYTES_PER_ELEMENT, floor_seconds
from benchmarks.runner import WorkloadResult

NOTE = (
    "Ratios are to the 20-byte/element floor at the bandwidth measured in this run, with all "
    "implementations alternated round by round; on a shared machine absolute times drift, "
    "so only ratios measured side by side in one run are comparable."
)


def to_dict(results: list[WorkloadResult], meta: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready results: per workload the probe, floor and each implementation's figures."""
    out: dict[str, Any] = {"meta": meta, "note": NOTE, "workloads": []}
    for wr in results:
        bandwidth = PROBE_BYTES_PER_ELEMENT * meta["probe_elements"] / wr.probe.median
        floor = floor_seconds(wr.workload.n_elements, bandwidth)
        rows = []
        for m in wr.results:
            s = m.summary
            rows.append(
                {
                    "name": m.name,
                    "median_s": s.median,
                    "q1_s": s.q1,
                    "q3_s": s.q3,
                    "samples": s.n,
                    "steps_per_sample": m.steps_per_sample,
                    "ratio_to_floor": s.median / floor,
                    "us_per_param": s.median * 1e6 / wr.workload.n_params,
                    "peak_extra_bytes": m.peak_extra_bytes,
                }
            )
        out["workloads"].append(
            {
                "name": wr.workload.name,
                "n_params": wr.workload.n_params,
                "n_elements": wr.workload.n_elements,
                "bandwidth_GBps": bandwidth / 1e9,
                "floor_s": floor,
                "probe_spread": wr.probe.spread,
                "results": rows,
                "skipped": wr.skipped,
            }
        )
    return out


def _mib(b: int | None) -> str:
    return "N/A" if b is None else f"{b / 2**20:.2f}"


def table(data: dict[str, Any]) -> str:
    """A plain-text table per workload."""
    lines = [NOTE, ""]
    for w in data["workloads"]:
        lines.append(
            f"== {w['name']}: {w['n_params']} params, {w['n_elements']:,} float32 elements; "
            f"stream {w['bandwidth_GBps']:.1f} GB/s (IQR {100 * w['probe_spread']:.0f}%), "
            f"floor {w['floor_s'] * 1e3:.3f} ms"
        )
        lines.append(
            f"{'implementation':<28}{'ms/step':>10}{'IQR %':>7}{'x floor':>9}{'us/param':>10}{'peak MiB':>10}"
        )
        for r in sorted(w["results"], key=lambda r: r["median_s"]):
            iqr = 100 * (r["q3_s"] - r["q1_s"]) / r["median_s"]
            lines.append(
                f"{r['name']:<28}{r['median_s'] * 1e3:>10.3f}{iqr:>7.0f}{r['ratio_to_floor']:>9.2f}"
                f"{r['us_per_param']:>10.2f}{_mib(r['peak_extra_bytes']):>10}"
            )
        for name, why in w["skipped"].items():
            lines.append(f"{name:<28} skipped: {why}")
        lines.append("")
    return "\n".join(lines)


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def chart(data: dict[str, Any], path: Path) -> None:
    """Horizontal bars of each implementation's ratio to the floor, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    workloads = data["workloads"]
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4.5), squeeze=False)
    for ax, w in zip(axes[0], workloads, strict=True):
        rows = sorted(w["results"], key=lambda r: -r["ratio_to_floor"])
        names = [r["name"] for r in rows]
        ratios = [r["ratio_to_floor"] for r in rows]
        colors = ["tab:blue" if n.startswith("ref") else "tab:gray" for n in names]
        ax.barh(names, ratios, color=colors)
        ax.axvline(1.0, color="k", lw=1, ls="--")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{w['name']} ({w['n_params']} params, {w['n_elements'] / 2**20:.1f} Mi el.)")
        ax.set_xlabel("time / memory floor (20 B/element)")
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("One corrected-momentum step, ratio to the memory floor (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
