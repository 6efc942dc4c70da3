"""``python -m benchmarks.walk_cache``: does ``Link``'s cached walk pay? ``opt.update()`` with and without it.

One process per workload times ``CorrectedMomentumSGD.update()`` (the default
dispatch on NumPy) with ``Link._walk`` as shipped (cached until any link gains
a child) and with an uncached walk that sorts and joins the paths on every
call, swapping the two in alternating order each round, so that a shared
machine's drift hits both alike. Workloads: the benchmark's ``small`` (1000 x
1 Ki) and ``resnet50`` shapes, each as one flat link (as ``benchmarks``
builds them) and as a tree (``/bN/lM/{W,g,b}``: ten child links of three
parameters per block). Prints, per workload, the median step time of each and
the median (quartiles) of the per-round ratio uncached / cached: above 1
means the cache saves time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import corrmom_ref as cr
from benchmarks.workloads import RESNET50

SHAPES = {"small": [(1 << 10,)] * 1000, "resnet50": RESNET50}


def uncached_walk(self: cr.Link) -> tuple[tuple[str, cr.Parameter], ...]:
    """``Link._walk`` without its cache: the same pairs, built on every call."""
    params, links = self.__dict__["_params"], self.__dict__["_links"]
    pairs = [("/" + name, params[name]) for name in sorted(params)]
    for name in sorted(links):
        pairs.extend(("/" + name + path, param) for path, param in uncached_walk(links[name]))
    return tuple(pairs)


def build(shapes: list[tuple[int, ...]], nested: bool) -> cr.Link:
    rng = np.random.default_rng(0)
    params = [cr.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    if not nested:
        return cr.Link(**{f"p{i}": p for i, p in enumerate(params)})
    blocks = {}
    for start in range(0, len(params), 30):
        chunk = params[start : start + 30]
        children = {
            f"l{j}": cr.Link(**dict(zip(("W", "g", "b"), chunk[k : k + 3], strict=False)))
            for j, k in enumerate(range(0, len(chunk), 3))
        }
        blocks[f"b{start // 30}"] = cr.Link(**children)
    return cr.Link(**blocks)


def median_step(update: Callable[[], Any], steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        update()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(workload: str, nested: bool, rounds: int, steps: int) -> str:
    link = build(SHAPES[workload], nested)
    assert len(list(link.params())) == len(SHAPES[workload])
    opt = cr.CorrectedMomentumSGD(lr=0.01, momentum=0.9).setup(link)
    cached_walk = cr.Link._walk
    for _ in range(3):
        opt.update()
    cached, uncached = [], []
    try:
        for r in range(rounds):
            order = [(cached_walk, cached), (uncached_walk, uncached)]
            for walk, out in order if r % 2 == 0 else order[::-1]:
                cr.Link._walk = walk  # type: ignore[method-assign]
                out.append(median_step(opt.update, steps))
    finally:
        cr.Link._walk = cached_walk  # type: ignore[method-assign]
    ratios = [u / c for c, u in zip(cached, uncached, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    name = f"{workload}{' (tree)' if nested else ''}"
    return (
        f"{name}: cached {statistics.median(cached) * 1e3:.3f} ms, uncached "
        f"{statistics.median(uncached) * 1e3:.3f} ms; uncached / cached = {statistics.median(ratios):.3f} "
        f"(quartiles {q1:.3f} to {q3:.3f}, {rounds} rounds of {steps} steps)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.walk_cache", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workload", choices=sorted(SHAPES), action="append")
    args = parser.parse_args(argv)
    for workload in args.workload or sorted(SHAPES, reverse=True):
        for nested in (False, True):
            print(compare(workload, nested, args.rounds, args.steps), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
