"""``python -m benchmarks``: run every implementation side by side and write the results.

Prints a table, writes ``benchmarks/results.json`` and ``benchmarks/results.png``
(paths configurable). ``--quick`` shrinks the workloads and repetitions for a
smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.bandwidth import StreamProbe
from benchmarks.impls.base import Impl
from benchmarks.runner import measure
from benchmarks.workloads import default_workloads

HERE = Path(__file__).resolve().parent


def build_impls(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """The implementations to time (those whose library imports), and the Chainer worker if any."""
    impls: list[Impl] = []
    workers: list[Any] = []
    from benchmarks.impls.reference import Reference

    impls += [Reference("numpy", "generic"), Reference("numpy", "flat")]
    if args.chainer_python:
        from benchmarks.impls.chainer_proxy import ChainerProxy

        proxy = ChainerProxy(args.chainer_python)
        impls.append(proxy)
        workers.append(proxy)
    try:
        import torch

        torch.set_num_threads(args.torch_threads)

        from benchmarks.impls.torch_sgd import VARIANTS, TorchSGD

        impls += [TorchSGD(v) for v in VARIANTS]
        impls += [Reference("torch", mode) for mode in ("generic", "fast", "flat")]
    except ImportError as error:
        print(f"skipping torch: {error}", file=sys.stderr)
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401

        from benchmarks.impls.optax_sgd import OptaxSGD

        impls.append(OptaxSGD())
        impls += [Reference("jax", mode) for mode in ("generic", "fast", "fast+donate")]
    except ImportError as error:
        print(f"skipping jax/optax: {error}", file=sys.stderr)
    return impls, workers


def _meta(args: argparse.Namespace, probe_elements: int) -> dict[str, Any]:
    versions = {}
    for mod in ("numpy", "torch", "jax", "optax", "array_api_compat"):
        with contextlib.suppress(ImportError):
            versions[mod] = __import__(mod).__version__
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks", *sys.argv[1:]]),
        "quick": args.quick,
        "torch_threads": args.torch_threads,
        "rounds": args.rounds,
        "probe_elements": probe_elements,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="alternated rounds per workload")
    parser.add_argument(
        "--chainer-python",
        default=os.environ.get("CORRMOM_CHAINER_PYTHON"),
        help="interpreter of a virtualenv with chainer==7.8.1 (default: $CORRMOM_CHAINER_PYTHON)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch.set_num_threads (default 1: NumPy and Chainer use one core)",
    )
    parser.add_argument(
        "--impls",
        nargs="*",
        default=None,
        help="run only implementations whose name contains one of these strings",
    )
    parser.add_argument("--only", nargs="*", default=None, help="workload names to run")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--chart", type=Path, default=HERE / "results.png")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    target_s = 0.002 if args.quick else 0.04
    probe_elements = (1 << 16) if args.quick else (1 << 25)

    impls, workers = build_impls(args)
    if args.impls:
        impls = [i for i in impls if any(pattern in i.name for pattern in args.impls)]
    probe = StreamProbe(probe_elements)
    results = []
    try:
        for workload in default_workloads(args.quick):
            if args.only and workload.name not in args.only:
                continue
            print(f"workload {workload.name}", file=sys.stderr, flush=True)
            results.append(measure(workload, impls, probe, args.rounds, target_s))
    finally:
        for worker in workers:
            worker.shutdown()
    data = report.to_dict(results, _meta(args, probe_elements))
    print(report.table(data))
    report.write_json(data, args.json)
    report.chart(data, args.chart)
    print(f"wrote {args.json} and {args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
