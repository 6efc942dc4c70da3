"""Write the conformance suite's golden Chainer snapshot (run with real Chainer 7.8.1).

    python tools/make_conformance_golden.py src/corrmom_conformance/fixtures

Four steps of chainer.optimizers.CorrectedMomentumSGD under a changing
learning rate on a nested link, then a snapshot (chainer.serializers.save_npz),
then four more steps: ``golden.npz`` holds the parameters at the snapshot, the
gradients and learning rates of the continuation and Chainer's parameters and
state after each continued step; ``golden_optimizer.npz`` is Chainer's snapshot.
"""

from __future__ import annotations

import sys
from pathlib import Path

import chainer
import numpy as np

SHAPES = {"W": (2, 3), "b": (3,), "l1/W": (4,)}
LRS = [0.05, 0.1, 0.2, 0.2, 0.1, 0.1, 0.02, 0.02]


def main(out_dir: str) -> None:
    rng = np.random.default_rng(2017)
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()} for _ in LRS]
    inner = chainer.Link()
    with inner.init_scope():
        inner.W = chainer.Parameter(init["l1/W"].copy())
    model = chainer.Chain()
    with model.init_scope():
        model.W = chainer.Parameter(init["W"].copy())
        model.b = chainer.Parameter(init["b"].copy())
        model.l1 = inner
    params = {"W": model.W, "b": model.b, "l1/W": inner.W}
    opt = chainer.optimizers.CorrectedMomentumSGD(lr=LRS[0], momentum=0.9).setup(model)
    out: dict[str, np.ndarray] = {}
    for step, (lr, g) in enumerate(zip(LRS, grads, strict=False)):
        if step == 4:
            chainer.serializers.save_npz(str(Path(out_dir) / "golden_optimizer.npz"), opt)
            for k, p in params.items():
                out[f"snapshot_param/{k}"] = p.array.copy()
        opt.lr = lr
        for k, p in params.items():
            p.grad = g[k].copy()
        opt.update()
        if step >= 4:
            for k, p in params.items():
                out[f"grad/{step}/{k}"] = g[k]
                out[f"param/{step}/{k}"] = p.array.copy()
                out[f"state/{step}/{k}"] = p.update_rule.state["v"].copy()
    out["lrs"] = np.array(LRS)
    out["chainer_version"] = np.array(chainer.__version__)
    np.savez(Path(out_dir) / "golden.npz", **out)


if __name__ == "__main__":
    main(sys.argv[1])
