"""Generate the real-Chainer fixtures in ``tests/fixtures/chainer/``.

Runs each scenario below in Chainer 7.8.1 (see :mod:`chainer_scenarios` for
the format) and writes, per scenario ``NAME``:

* ``NAME.json``: the spec, Chainer's and NumPy's versions, whether corrmom_ref
  must match bitwise on NumPy (same operation order), and the scalars
  recorded per step (loss scale, ``t``, rule ``t``) for the uninterrupted
  and the resumed run;
* ``NAME.npz``: the inputs, and parameters and states after every step of
  both runs (a state is recorded as zeros before it exists);
* ``NAME.model.npz``, ``NAME.optimizer.npz``: ``chainer.serializers.save_npz``
  of the model and the optimizer after step ``snapshot_after``.

Run it with a Python that has Chainer 7.8.1 (``nox -s fixtures`` builds one)::

    python tools/make_chainer_fixtures.py [OUTPUT_DIR]
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import chainer
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import chainer_scenarios as cs

NESTED = {"/W": [2, 3], "/l1/W": [3, 2], "/l1/b": [3]}
ALL = list(NESTED)
WARMUP_THEN_DECAY = [0.025, 0.05, 0.075, 0.1, 0.1, 0.01, 0.01, 0.001]


def steps(n: int, *, lrs: list | None = None, via_loss: bool = False, omit: dict | None = None) -> list:
    omit = omit or {}
    return [
        {
            "lr": None if lrs is None else lrs[k],
            "via_loss": via_loss,
            "grads": [p for p in ALL if p not in omit.get(k + 1, ())],
        }
        for k in range(n)
    ]


LR_SCHEDULE = {
    "optimizer": "CorrectedMomentumSGD",
    "lr": 0.025,
    "momentum": 0.9,
    "dtype": "float32",
    "params": NESTED,
    "fp32_update": False,
    "loss_scaling": None,
    "hooks": [],
    "overrides": {"/l1/b": {"lr": 0.05}},
    # step 3: /l1/b has no gradient (reallocated as zeros; still moves by momentum)
    "steps": steps(8, lrs=WARMUP_THEN_DECAY, omit={3: ["/l1/b"]}),
    "snapshot_after": 4,
}

SCENARIOS: dict[str, tuple[dict, bool, float]] = {
    # name: (spec, bitwise on NumPy, gradient magnitude)
    "corrected_lr_schedule": (LR_SCHEDULE, True, 1.0),
    "momentum_sgd_lr_schedule": (dict(LR_SCHEDULE, optimizer="MomentumSGD"), True, 1.0),
    "fp16_dynamic_scaling_fp32_update": (
        {
            "optimizer": "CorrectedMomentumSGD",
            "lr": 0.01,
            "momentum": 0.9,
            "dtype": "float16",
            "params": NESTED,
            "fp32_update": True,
            "loss_scaling": {"interval": 2},
            "hooks": [],
            "overrides": {},
            "steps": steps(12, via_loss=True),
            "snapshot_after": 8,
        },
        True,
        1500.0,  # 1500 * 64 overflows float16: the 7th step is skipped
    ),
    "fp16_static_scaling": (
        {
            "optimizer": "CorrectedMomentumSGD",
            "lr": 0.01,
            "momentum": 0.9,
            "dtype": "float16",
            "params": NESTED,
            "fp32_update": False,
            "loss_scaling": {"scale": 8.0},
            "hooks": [],
            "overrides": {},
            "steps": steps(6, via_loss=True),
            "snapshot_after": 3,
        },
        True,
        1.0,
    ),
    "hooks_weight_decay_lasso_hard_clipping": (
        {
            "optimizer": "CorrectedMomentumSGD",
            "lr": 0.05,
            "momentum": 0.9,
            "dtype": "float32",
            "params": NESTED,
            "fp32_update": False,
            "loss_scaling": {"scale": 4.0},
            "hooks": [
                ["WeightDecay", {"rate": 0.01}],
                ["Lasso", {"rate": 0.002}],
                ["GradientHardClipping", {"lower_bound": -3.0, "upper_bound": 3.0}],
            ],
            "overrides": {},
            "steps": steps(6, via_loss=True),
            "snapshot_after": 3,
        },
        True,
        1.0,
    ),
    "hooks_gradient_clipping": (
        {
            "optimizer": "CorrectedMomentumSGD",
            "lr": 0.05,
            "momentum": 0.9,
            "dtype": "float32",
            "params": NESTED,
            "fp32_update": False,
            "loss_scaling": None,
            "hooks": [["WeightDecay", {"rate": 0.01}], ["GradientClipping", {"threshold": 1.0}]],
            "overrides": {},
            "steps": steps(6),
            "snapshot_after": 3,
        },
        False,  # Chainer computes the norm in float32, corrmom_ref in float64
        1.0,
    ),
    "dynamic_scaling_nan": (
        {
            "optimizer": "CorrectedMomentumSGD",
            "lr": 0.1,
            "momentum": 0.5,
            "dtype": "float32",
            "params": NESTED,
            "fp32_update": False,
            "loss_scaling": {"interval": 3},
            "hooks": [],
            "overrides": {},
            "steps": steps(7, via_loss=True),
            "snapshot_after": 5,
        },
        True,
        1.0,
    ),
    "disabled_rule_and_epochs": (
        {
            "optimizer": "MomentumSGD",
            "lr": 0.1,
            "momentum": 0.9,
            "dtype": "float64",
            "params": NESTED,
            "fp32_update": False,
            "loss_scaling": None,
            "hooks": [],
            "overrides": {"/W": {"momentum": 0.5}},
            # /l1/W never updates: its rule has no state, so the snapshot has no l1/W/v
            "disabled": ["/l1/W"],
            "steps": [dict(s, new_epoch=k % 2 == 1) for k, s in enumerate(steps(6))],
            "snapshot_after": 4,
        },
        True,
        1.0,
    ),
}
#: (scenario, step, path): a NaN is planted in that gradient.
NANS = {("dynamic_scaling_nan", 4, "/l1/W")}


def make_inputs(name: str, spec: dict, magnitude: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec["dtype"])
    inputs = {}
    for path, shape in spec["params"].items():
        inputs[f"init/{path}"] = rng.standard_normal(shape).astype(dtype)
    n = len(spec["steps"])
    for path, shape in spec["params"].items():
        grads = np.zeros((n, *shape))
        for k, step in enumerate(spec["steps"], start=1):
            if path in step["grads"]:
                g = rng.standard_normal(shape) * magnitude / 4
                if magnitude > 1:
                    g.flat[0] = magnitude
                if (name, k, path) in NANS:
                    g.flat[1] = np.nan
                grads[k - 1] = g
        inputs[f"grad/{path}"] = grads.astype(dtype)
    return inputs


def generate(name: str, spec: dict, bitwise: bool, magnitude: float, seed: int, out: Path) -> None:
    inputs = make_inputs(name, spec, magnitude, seed)
    model = cs.build_model(spec, inputs)
    opt = cs.build_optimizer(spec, model)
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, list] = {}

    def save_snapshot(k: int, model: chainer.Chain, opt: chainer.Optimizer) -> None:
        if k == spec["snapshot_after"]:
            chainer.serializers.save_npz(str(out / f"{name}.model.npz"), model)
            chainer.serializers.save_npz(str(out / f"{name}.optimizer.npz"), opt)

    cs.run_steps(spec, inputs, model, opt, 1, "run", arrays, scalars, on_step=save_snapshot)
    resumed_arrays, resumed_scalars = cs.resume(
        spec, inputs, str(out / f"{name}.model.npz"), str(out / f"{name}.optimizer.npz"), "resumed"
    )
    np.savez_compressed(out / f"{name}.npz", **inputs, **arrays, **resumed_arrays)
    record = {
        "spec": spec,
        "bitwise_on_numpy": bitwise,
        "chainer": chainer.__version__,
        "numpy": np.__version__,
        "seed": seed,
        "run": scalars,
        "resumed": resumed_scalars,
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "tests/fixtures/chainer"
    out.mkdir(parents=True, exist_ok=True)
    for seed, (name, (spec, bitwise, magnitude)) in enumerate(SCENARIOS.items()):
        generate(name, copy.deepcopy(spec), bitwise, magnitude, seed, out)
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
