"""Record a small Chainer 7.8.1 training run for the optax port test (``tests/optax_port/test_chainer_training_run.py``).

A two-layer perceptron (``l1 = Linear(4, 8)``, tanh, ``l2 = Linear(8, 3)``,
mean squared error) trains for 100 steps with ``CorrectedMomentumSGD``
(momentum 0.9), dynamic loss scaling (interval 10) and a step schedule of
the learning rate indexed by the number of updates applied (the rule's
``t``): 0.0125, doubled at 2 and 4, halved at 40 and 80 (so every value is
a power-of-two multiple of 0.0125, as ``optax.piecewise_constant_schedule``
computes it). The inputs of steps 21 and 71 hold an infinity, so those
steps overflow and are skipped. After step 50 the model and the optimizer
are saved with ``chainer.serializers.save_npz`` and a fresh model and
optimizer (dynamic loss scaling configured again: Chainer does not save the
scale) load them and run steps 51 to 100.

Writes to ``tests/fixtures/chainer_training/`` (or the folder given):

* ``mlp.npz``: ``init/<path>``, the batches ``x``, ``y``, and per step of
  the uninterrupted run (prefix ``run``) and of the resumed run (prefix
  ``resumed``, steps 51..100): ``<prefix>/param/<path>`` (after the step),
  ``<prefix>/grad/<path>`` (the still-scaled gradient an optimizer pre hook
  sees), ``<prefix>/scale`` (loss scale after the step), ``<prefix>/lr``
  (the learning rate of the step), ``<prefix>/t`` and ``<prefix>/rule_t``;
* ``mlp.model.npz``, ``mlp.optimizer.npz``: the snapshots after step 50.

Run with a Python that has Chainer 7.8.1::

    python tools/make_chainer_training_fixture.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

STEPS = 100
SNAPSHOT_AFTER = 50
OVERFLOW_STEPS = (21, 71)  # 1-based
INTERVAL = 10
PATHS = ("/l1/W", "/l1/b", "/l2/W", "/l2/b")


def learning_rate(applied: int) -> float:
    """The schedule at ``applied`` updates (the port uses optax.piecewise_constant_schedule)."""
    lr = 0.0125
    for boundary, factor in ((2, 2.0), (4, 2.0), (40, 0.5), (80, 0.5)):
        if applied >= boundary:
            lr *= factor
    return lr


class MLP(chainer.Chain):
    def __init__(self, init: dict[str, np.ndarray]) -> None:
        super().__init__()
        with self.init_scope():
            self.l1 = L.Linear(4, 8, initialW=init["/l1/W"].copy(), initial_bias=init["/l1/b"].copy())
            self.l2 = L.Linear(8, 3, initialW=init["/l2/W"].copy(), initial_bias=init["/l2/b"].copy())

    def loss(self, x: np.ndarray, y: np.ndarray) -> chainer.Variable:
        return F.mean_squared_error(self.l2(F.tanh(self.l1(x))), y)


def make_optimizer(model: MLP) -> chainer.Optimizer:
    opt = chainer.optimizers.CorrectedMomentumSGD(lr=learning_rate(0), momentum=0.9)
    opt.setup(model)
    opt.loss_scaling(interval=INTERVAL)
    return opt


def train(
    model: MLP, opt: chainer.Optimizer, x: np.ndarray, y: np.ndarray, steps: range, prefix: str
) -> dict:
    out: dict[str, list] = {k: [] for k in ("scale", "lr", "t", "rule_t")}
    seen: dict[str, np.ndarray] = {}

    def record(optimizer: chainer.Optimizer) -> None:
        for path, p in optimizer.target.namedparams():
            seen[path] = np.array(p.grad, copy=True)

    opt.add_hook(record, name="record", timing="pre")
    for step in steps:
        opt.lr = learning_rate(model.l1.W.update_rule.t)
        out["lr"].append(opt.lr)
        opt.update(model.loss, x[step - 1], y[step - 1])
        for path, p in model.namedparams():
            out.setdefault(f"param/{path}", []).append(np.array(p.array, copy=True))
            out.setdefault(f"grad/{path}", []).append(seen[path])
        out["scale"].append(opt._loss_scale)
        out["t"].append(opt.t)
        out["rule_t"].append(model.l1.W.update_rule.t)
    opt.remove_hook("record")
    return {f"{prefix}/{k}": np.asarray(v) for k, v in out.items()}


def main(out_dir: Path) -> None:
    rng = np.random.default_rng(20171706)
    shapes = {"/l1/W": (8, 4), "/l1/b": (8,), "/l2/W": (3, 8), "/l2/b": (3,)}
    init = {p: (0.5 * rng.standard_normal(s)).astype(np.float32) for p, s in shapes.items()}
    x = rng.standard_normal((STEPS, 16, 4)).astype(np.float32)
    y = rng.standard_normal((STEPS, 16, 3)).astype(np.float32)
    for step in OVERFLOW_STEPS:
        x[step - 1, 0, 0] = np.inf
    arrays: dict[str, np.ndarray] = {f"init/{p}": v for p, v in init.items()}
    arrays |= {"x": x, "y": y}

    out_dir.mkdir(parents=True, exist_ok=True)
    with np.errstate(all="ignore"), chainer.using_config("dtype", np.float32):
        import warnings

        warnings.simplefilter("ignore")
        model = MLP(init)
        opt = make_optimizer(model)
        arrays |= train(model, opt, x, y, range(1, SNAPSHOT_AFTER + 1), "first")
        chainer.serializers.save_npz(out_dir / "mlp.model.npz", model)
        chainer.serializers.save_npz(out_dir / "mlp.optimizer.npz", opt)
        arrays |= train(model, opt, x, y, range(SNAPSHOT_AFTER + 1, STEPS + 1), "rest")

        resumed = MLP(init)
        resumed_opt = make_optimizer(resumed)
        chainer.serializers.load_npz(out_dir / "mlp.model.npz", resumed)
        chainer.serializers.load_npz(out_dir / "mlp.optimizer.npz", resumed_opt)
        arrays |= train(resumed, resumed_opt, x, y, range(SNAPSHOT_AFTER + 1, STEPS + 1), "resumed")

    # the uninterrupted run: the first and the rest, concatenated
    for key in [k for k in arrays if k.startswith("first/")]:
        name = key.removeprefix("first/")
        arrays[f"run/{name}"] = np.concatenate([arrays.pop(key), arrays.pop(f"rest/{name}")])
    arrays["chainer_version"] = np.asarray(chainer.__version__)
    np.savez_compressed(out_dir / "mlp.npz", **arrays)
    print(f"wrote {out_dir}: run scales {arrays['run/scale'].tolist()}")


if __name__ == "__main__":
    default = Path(__file__).parents[1] / "tests" / "fixtures" / "chainer_training"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
