"""Record a small Chainer 7.8.1 training run for the PyTorch-port test (``tests/torch_port/test_chainer_training_loop.py``).

A two-layer perceptron (``l1``: Linear 4->8, tanh, ``l2``: Linear 8->3, mean
squared error) trains for 100 steps with ``CorrectedMomentumSGD(lr=0.1,
momentum=0.9)``, a warm-up-then-step learning-rate schedule (:func:`factor`),
``WeightDecay(1e-4)`` and dynamic loss scaling (interval 10); the batches of
steps 41 and 77 hold an infinity, so those steps overflow and are skipped.
Writes to ``OUTPUT_DIR`` (default ``tests/fixtures/chainer_torch_port``, apart from the replay scenarios of ``tests/fixtures/chainer``):

* ``torch_port.npz``: the data ``x``, ``y``, the initial parameters
  (``init/<path>``), and stacked over the steps (row ``k - 1`` for step
  ``k``): ``lr``, ``scale`` (the loss scale the backward used), ``t``,
  ``grad/<path>`` (as backward left them, scaled), ``param/<path>`` and
  ``v/<path>`` (after the update); ``scale_after_50`` and
  ``nonfinite_ever_after_50``;
* ``torch_port.optimizer.npz``, ``torch_port.model.npz``:
  ``chainer.serializers.save_npz`` of the optimizer and the model after step 50.

Run it with a Python that has Chainer 7.8.1::

    python tools/make_torch_port_fixture.py [OUTPUT_DIR]

``python tools/make_torch_port_fixture.py resume FIXTURE MODEL OPTIMIZER OUT``
instead loads a model and optimizer snapshot taken after step 50 (the test
writes them from PyTorch), runs steps 51..100 in Chainer and writes what they
recorded to ``OUT`` (the test compares it with PyTorch's continuation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

STEPS, SNAPSHOT, BATCH = 100, 50, 16
BASE_LR, INTERVAL, DECAY = 0.1, 10, 1e-4
OVERFLOW_STEPS = (41, 77)


def factor(epoch: int) -> float:
    """Learning-rate factor before step ``epoch + 1``: linear warm-up over 10 steps, then x0.1 from step 61."""
    return min(1.0, (epoch + 1) / 10) * (0.1 if epoch >= 60 else 1.0)


def build(rng: np.random.Generator | None) -> tuple[chainer.Chain, chainer.Optimizer, dict[str, np.ndarray]]:
    """The model (random parameters from ``rng``, else zeros) and its optimizer, set up; ``{init/<path>: W0}``."""
    model = chainer.Chain()
    with model.init_scope():
        model.l1 = L.Linear(4, 8)
        model.l2 = L.Linear(8, 3)
    init = {}
    for path, p in model.namedparams():
        p.array[...] = 0 if rng is None else (0.5 * rng.standard_normal(p.shape)).astype(np.float32)
        init[f"init{path}"] = p.array.copy()
    opt = chainer.optimizers.CorrectedMomentumSGD(lr=BASE_LR, momentum=0.9)
    opt.setup(model)
    opt.add_hook(chainer.optimizer_hooks.WeightDecay(DECAY))
    opt.loss_scaling(interval=INTERVAL)
    return model, opt, init


def train(model, opt, x, y, first: int, last: int, at_snapshot=None) -> dict[str, np.ndarray]:
    """Steps ``first..last`` (1-based); what each recorded, stacked over the steps."""
    steps: dict[str, list] = {}
    for k in range(first, last + 1):
        opt.lr = BASE_LR * factor(k - 1)
        loss = F.mean_squared_error(model.l2(F.tanh(model.l1(x[k - 1]))), y[k - 1])
        model.cleargrads()
        steps.setdefault("scale", []).append(float(opt._loss_scale))
        steps.setdefault("lr", []).append(float(opt.lr))
        with np.errstate(invalid="ignore", over="ignore"):
            loss.backward(loss_scale=opt._loss_scale)
        for path, p in model.namedparams():
            steps.setdefault(f"grad{path}", []).append(p.grad.copy())
        opt.update()
        for path, p in model.namedparams():
            steps.setdefault(f"param{path}", []).append(p.array.copy())
            steps.setdefault(f"v{path}", []).append(p.update_rule.state["v"].copy())
        steps.setdefault("t", []).append(opt.t)
        if k == SNAPSHOT and at_snapshot is not None:
            at_snapshot(model, opt)
    return {key: np.stack([np.asarray(v) for v in values]) for key, values in steps.items()}


def main(out: Path) -> None:
    rng = np.random.default_rng(20260101)
    x = rng.standard_normal((STEPS, BATCH, 4)).astype(np.float32)
    y = rng.standard_normal((STEPS, BATCH, 3)).astype(np.float32)
    for k in OVERFLOW_STEPS:
        x[k - 1, 0, 0] = np.inf
    model, opt, init = build(rng)
    record: dict[str, np.ndarray] = {"x": x, "y": y, **init}

    def snapshot(model: chainer.Chain, opt: chainer.Optimizer) -> None:
        chainer.serializers.save_npz(out / "torch_port.optimizer.npz", opt)
        chainer.serializers.save_npz(out / "torch_port.model.npz", model)
        record["scale_after_50"] = np.float64(opt._loss_scale)
        record["nonfinite_ever_after_50"] = np.bool_(opt._loss_scaling_isnan_ever)

    record.update(train(model, opt, x, y, 1, STEPS, snapshot))
    np.savez_compressed(out / "torch_port.npz", **record)
    meta = {"chainer": chainer.__version__, "numpy": np.__version__, "steps": STEPS, "snapshot": SNAPSHOT}
    (out / "torch_port.json").write_text(json.dumps(meta, indent=1) + "\n")


def resume(fixture: Path, model_npz: Path, optimizer_npz: Path, out: Path) -> None:
    """Load a snapshot taken after step 50 (written by PyTorch) into Chainer and run steps 51..100."""
    with np.load(fixture) as npz:
        x, y = npz["x"], npz["y"]
    model, opt, _ = build(None)
    chainer.serializers.load_npz(model_npz, model)
    chainer.serializers.load_npz(optimizer_npz, opt)
    np.savez(out, **train(model, opt, x, y, SNAPSHOT + 1, STEPS))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "resume":
        resume(*(Path(a) for a in sys.argv[2:6]))
    else:
        main(
            Path(sys.argv[1])
            if len(sys.argv) > 1
            else Path(__file__).parent.parent / "tests/fixtures/chainer_torch_port"
        )
