"""Issue 22's optax rows as ratios, side by side in one process.

``PYTHONPATH=src:. python -m benchmarks.optax_side_by_side [--before REV] [--rounds N] [--steps N]
[--workload W ...] [--shape AxBx... ...] [--clock wall|cpu] [--warm-up N]``

Pairs (ours / theirs, each a jitted ``update`` + ``apply_updates`` step as in
:mod:`benchmarks.runners`):

* ``ref-optax, jit`` / ``optax sgd, jit`` (undonated), and the same donated;
* ``loss_scaling`` (dynamic) around ``corrected_momentum_sgd`` / the same
  transformation without the wrapper, donated.

With ``--before REV`` the ``corrmom_ref.optax`` modules of that git revision
(``_momentum.py``, ``_loss_scaling.py``) are timed too, as extra rows of the
same rounds. ``--shape 512x512x3x3 2359296`` adds a workload of one parameter of
each shape given (the same elements as a 4-D weight and flat, say). Each round
times every row once (``--steps`` steps, after one warm-up step), in an order
shuffled per round (:func:`benchmarks.measure.round_order`); a pair's ratio is
taken within each round and the median over rounds reported with its range. XLA is
limited to one thread (``XLA_FLAGS``) unless the variable is already set.
"""

from __future__ import annotations

import os

from benchmarks.measure import ONE_XLA_THREAD  # imports no JAX

os.environ.setdefault("XLA_FLAGS", ONE_XLA_THREAD)

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.measure import round_order
from benchmarks.runners import LR, MOMENTUM, _optax_sgd, _optax_step
from benchmarks.workloads import Workload, workloads

ROOT = Path(__file__).resolve().parents[1]


def _module_at(rev: str, name: str, folder: Path) -> ModuleType:
    """``corrmom_ref.optax.<name>`` as it was at ``rev``, imported under another name."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:src/corrmom_ref/optax/{name}.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The revision's _loss_scaling finds the skip of the revision's own transformations.
    text = text.replace("from corrmom_ref.optax._momentum import", "from before_momentum import")
    path = folder / f"before{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"before{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _transformations(before: str | None, folder: Path) -> dict[str, Callable[[], Any]]:
    import corrmom_ref.optax as co

    out: dict[str, Callable[[], Any]] = {
        "optax sgd": _optax_sgd,
        "ref-optax": lambda: co.corrected_momentum_sgd(LR, MOMENTUM),
        "ref-optax + loss_scaling": lambda: co.loss_scaling(co.corrected_momentum_sgd(LR, MOMENTUM)),
    }
    if before:
        momentum = _module_at(before, "_momentum", folder)
        scaling = _module_at(before, "_loss_scaling", folder)
        out["ref-optax (before)"] = lambda: momentum.corrected_momentum_sgd(LR, MOMENTUM)
        out["ref-optax + loss_scaling (before)"] = lambda: scaling.loss_scaling(
            momentum.corrected_momentum_sgd(LR, MOMENTUM)
        )
    return out


def _pairs(rows: list[str]) -> list[tuple[str, str]]:
    """(ours, theirs) row names, as issue 22's table divides them."""
    pairs = []
    for tag in ("", " (before)"):
        if f"ref-optax{tag}, jit" not in rows:
            continue
        pairs += [
            (f"ref-optax{tag}, jit", "optax sgd, jit"),
            (f"ref-optax{tag}, jit, donated", "optax sgd, jit, donated"),
            (f"ref-optax + loss_scaling{tag}, jit, donated", f"ref-optax{tag}, jit, donated"),
        ]
    return pairs


def _time(step: Callable[[], None], steps: int, clock: Callable[[], float]) -> float:
    step()
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


def _shape(text: str) -> tuple[int, ...]:
    """``512x512x3x3`` -> ``(512, 512, 3, 3)``: positive sizes only."""
    try:
        shape = tuple(int(size) for size in text.split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"a shape is positive sizes joined by 'x' (512x512x3x3), got {text!r}"
        )
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optax_side_by_side")
    parser.add_argument("--before", help="git revision whose corrmom_ref.optax to time as well")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workload", nargs="*", default=["small", "large", "resnet50"])
    parser.add_argument(
        "--shape",
        nargs="*",
        default=[],
        type=_shape,
        help="one workload of one parameter per shape given, written 512x512x3x3 (after --workload's)",
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=0,
        help="untimed steps of every row before the rounds: dynamic loss scaling doubles its "
        "scale from 1 on every clean step, a power of two (which it unscales by a "
        "multiplication) until the 17th step, then its cap 65504 (which it divides by); "
        "16 times every step at the cap",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: the process's CPU time (XLA on one thread), which a busy shared machine disturbs less",
    )
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}, clock={args.clock}")
    with tempfile.TemporaryDirectory() as folder:
        made = _transformations(args.before, Path(folder))
        chosen = [w for w in workloads(quick=False) if w.name in args.workload]
        for shape in args.shape:
            chosen.append(Workload("x".join(map(str, shape)), [shape]))
        for workload in chosen:
            steps: dict[str, Callable[[], None]] = {}
            for name, make in made.items():
                donated_only = "loss_scaling" in name
                if not donated_only:
                    steps[f"{name}, jit"] = _optax_step(make, donate=False)(workload.shapes)
                steps[f"{name}, jit, donated"] = _optax_step(make, donate=True)(workload.shapes)
            names = list(steps)
            for name in names:
                for _ in range(args.warm_up):
                    steps[name]()
            times: dict[str, list[float]] = {n: [] for n in names}
            for r in range(args.rounds):
                for name in round_order(names, r):
                    times[name].append(_time(steps[name], args.steps, clock))
            shapes = f" {workload.shapes[0]}" if len(workload.shapes) == 1 else ""
            print(
                f"\n{workload.name}: {len(workload.shapes)} parameters, {workload.elements:,} elements{shapes}"
            )
            for name in names:
                print(f"  {name:46} {statistics.median(times[name]) * 1e3:9.2f} ms")
            for ours, theirs in _pairs(names):
                ratios = [a / b for a, b in zip(times[ours], times[theirs], strict=True)]
                print(
                    f"  {ours:46} / {theirs:30} {statistics.median(ratios):6.3f} "
                    f"({min(ratios):.3f}-{max(ratios):.3f})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
