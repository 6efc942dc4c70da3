"""``python -m benchmarks.input_check_cache``: do the per-pass caches of ``check_update_inputs`` pay?

``GradientMethod.check_update_inputs`` remembers, within one pass over the
parameters, the last dtype ``check_parameter_dtype`` let through and the last
parent whose hyperparameters passed, so that a model of one dtype whose rules
read one optimizer's ``lr`` and ``momentum`` checks each once. This times
``opt.update()`` of ``CorrectedMomentumSGD`` (default dispatch, NumPy) with the
method as shipped and with a variant that checks every parameter on its own,
swapping the two in alternating order each round so that a shared machine's
drift hits both alike, and prints the median step time of each and the median
(quartiles) of the per-round ratio uncached / cached: above 1 means the caches
save time.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np

import corrmom_ref as cr
from benchmarks.walk_cache import SHAPES, build, median_step
from corrmom_ref import optimizer as optimizer_module
from corrmom_ref._namespace import quick_alike
from corrmom_ref._scalar_checks import check_loss_scale
from corrmom_ref._validation import check_gradient, check_parameter_dtype
from corrmom_ref.hyperparameter import quick_nonnegative_floats


def uncached_check(self: cr.GradientMethod) -> list[tuple[str, Any, cr.UpdateRule]]:
    """``check_update_inputs`` without its per-pass caches: every check for every parameter."""
    entries = self._rules()
    dispatching = optimizer_module._DISPATCHING_UPDATE_CORE
    for name, param, rule in entries:
        if not rule.enabled:
            continue
        array = param.array
        if getattr(type(rule), "update_core", None) is dispatching:
            rule.device_method(param)
        if array is None:
            continue
        grad = param.grad
        if grad is not None and not (type(grad) is type(array) and quick_alike(grad, array)):
            check_gradient(param, name)
        if rule.floating_point_only:
            check_parameter_dtype(param, name, type(rule).__name__)
        loss_scale = getattr(param, "loss_scale", None)
        if loss_scale is not None:
            check_loss_scale(loss_scale, f"parameter {name}: loss_scale")
        if not quick_nonnegative_floats(rule.hyperparam, rule.nonnegative_hyperparams):
            rule.check_hyperparameters(f"parameter {name}")
    return entries


def compare(workload: str, rounds: int, steps: int) -> str:
    link = build(SHAPES[workload], nested=False)
    opt = cr.CorrectedMomentumSGD(lr=0.01, momentum=0.9).setup(link)
    shipped = cr.GradientMethod.check_update_inputs
    for _ in range(3):
        opt.update()
    cached: list[float] = []
    uncached: list[float] = []
    try:
        for r in range(rounds):
            order = [(shipped, cached), (uncached_check, uncached)]
            for check, out in order if r % 2 == 0 else order[::-1]:
                cr.GradientMethod.check_update_inputs = check  # type: ignore[method-assign]
                out.append(median_step(opt.update, steps))
    finally:
        cr.GradientMethod.check_update_inputs = shipped  # type: ignore[method-assign]
    ratios = [u / c for c, u in zip(cached, uncached, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return (
        f"{workload}: cached {statistics.median(cached) * 1e3:.3f} ms, uncached "
        f"{statistics.median(uncached) * 1e3:.3f} ms; uncached / cached = {statistics.median(ratios):.3f} "
        f"(quartiles {q1:.3f} to {q3:.3f}, {rounds} rounds of {steps} steps)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.input_check_cache", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workload", choices=sorted(SHAPES), action="append")
    args = parser.parse_args(argv)
    np.random.seed(0)
    for workload in args.workload or sorted(SHAPES, reverse=True):
        print(compare(workload, args.rounds, args.steps), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
