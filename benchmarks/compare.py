"""``python -m benchmarks.compare OLD [NEW] --impl NAME [--workload small]``: two versions of the library, interleaved.

Times one implementation of :mod:`benchmarks.runners` (say ``"ref on numpy"``)
with the library of two versions, each a git revision of this repository or
a folder holding ``src/corrmom_ref`` (``NEW`` defaults to this working tree).
Each version runs in its own worker process that stays up for the whole
comparison; the driver asks them in turn, in alternating order, for the
median of a few steps, so that a shared machine's drift, which moves absolute
times by tens of per cent between runs, hits both alike. It prints the median
step time of each and the median (and quartiles) of the per-round ratio
``new / old``: below 1 means the new version is faster.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from benchmarks.runners import RUNNERS
from benchmarks.workloads import workloads

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("old", help="git revision or folder of the old version")
    parser.add_argument(
        "new", nargs="?", default=str(ROOT), help="git revision or folder (default: this tree)"
    )
    parser.add_argument(
        "--impl", default="ref on numpy", choices=sorted(RUNNERS), help="implementation to time"
    )
    parser.add_argument("--workload", default="small", help="large, small or resnet50 (or a --quick one)")
    parser.add_argument("--quick", action="store_true", help="the tiny workloads of the smoke test")
    parser.add_argument(
        "--rounds", type=int, default=30, help="rounds (each: one batch of steps per version)"
    )
    parser.add_argument("--steps", type=int, default=7, help="steps per batch (the batch's median is kept)")
    args = parser.parse_args(argv)
    names = {w.name for w in workloads(args.quick)}
    if args.workload not in names:
        parser.error(f"--workload must be one of {sorted(names)}, got {args.workload!r}")
    if args.rounds < 2 or args.steps < 1:
        parser.error("--rounds must be >= 2 and --steps >= 1")
    with tempfile.TemporaryDirectory() as scratch:
        versions = {
            label: _checkout(rev, Path(scratch) / label)
            for label, rev in (("old", args.old), ("new", args.new))
        }
        times = _interleave(versions, args)
    ratios = [new / old for old, new in zip(times["old"], times["new"], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    for label in ("old", "new"):
        print(f"{label}: {versions[label]}  median step {statistics.median(times[label]) * 1e3:.3f} ms")
    print(
        f"{args.impl}, {args.workload}: new / old = {statistics.median(ratios):.3f} "
        f"(quartiles {q1:.3f} to {q3:.3f}, {args.rounds} rounds of {args.steps} steps)"
    )
    return 0


def _checkout(rev: str, scratch: Path) -> Path:
    """The folder to import ``corrmom_ref`` from: ``rev`` itself if it is one, else its ``src`` from git."""
    folder = Path(rev)
    if (folder / "src" / "corrmom_ref").is_dir():
        return folder.resolve()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(
            f"{rev!r} is neither a folder with src/corrmom_ref nor a git revision: {archive.stderr.decode().strip()}"
        )
    scratch.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(scratch, filter="data")
        else:
            tar.extractall(scratch)  # our own repository's archive
    return scratch


def _interleave(versions: dict[str, Path], args: argparse.Namespace) -> dict[str, list[float]]:
    workers = {label: _start(folder, args) for label, folder in versions.items()}
    times: dict[str, list[float]] = {label: [] for label in workers}
    try:
        for ready in workers.values():
            _expect(ready, "ready")
        for round_index in range(args.rounds):
            order = list(workers) if round_index % 2 == 0 else list(workers)[::-1]
            for label in order:
                worker = workers[label]
                assert worker.stdin is not None
                worker.stdin.write(f"{args.steps}\n")
                worker.stdin.flush()
                times[label].append(float(_expect(worker, None)))
            print(f"  round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait(timeout=60)
    return times


def _start(folder: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "benchmarks.compare_worker", str(folder), args.impl, args.workload]
    if args.quick:
        command.append("--quick")
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _expect(worker: subprocess.Popen[str], expected: str | None) -> str:
    assert worker.stdout is not None
    line = worker.stdout.readline().strip()
    if not line or (expected is not None and line != expected):
        worker.kill()
        raise SystemExit(
            f"a worker failed (exit {worker.wait()}): {line or 'no output'}; see its traceback above"
        )
    return line


if __name__ == "__main__":
    sys.exit(main())
