"""Times Chainer's CorrectedMomentumSGD in Chainer's own interpreter (NumPy < 2).

Run as ``python chainer_worker.py SHAPES_JSON REPS``; prints a JSON object
with the per-step times in seconds and the peak extra memory of one step.
Stdlib, NumPy and Chainer only: it runs inside Chainer's virtualenv.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc

import chainer
import numpy as np


def main() -> None:
    shapes = [tuple(s) for s in json.loads(sys.argv[1])]
    reps = int(sys.argv[2])
    rng = np.random.default_rng(0)
    link = chainer.Link()
    with link.init_scope():
        for i, shape in enumerate(shapes):
            setattr(link, f"p{i}", chainer.Parameter(rng.standard_normal(shape, dtype=np.float32)))
    opt = chainer.optimizers.CorrectedMomentumSGD(lr=0.01, momentum=0.9).setup(link)
    for p in link.params():
        p.grad = rng.standard_normal(p.shape, dtype=np.float32)
    opt.update()  # state creation outside the timed steps
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        opt.update()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    opt.update()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print(json.dumps({"times": times, "peak_extra_bytes": peak, "version": chainer.__version__}))


if __name__ == "__main__":
    main()
