"""Replay the scenarios of ``tools/chainer_scenarios.py`` in corrmom_ref.

The mirror image of the Chainer side: the same spec and inputs drive
corrmom_ref's objects on any backend, recording the same quantities.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from backends import Backend

import corrmom_ref as cr
from tools.scenario_spec import configure_optimizer

FIXTURES = Path(__file__).parent / "fixtures" / "chainer"
OPTIMIZERS = {"CorrectedMomentumSGD": cr.CorrectedMomentumSGD, "MomentumSGD": cr.MomentumSGD}


def scenario_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in FIXTURES.glob("*.json"))


def load_scenario(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return record, arrays


def build_model(bk: Backend, spec: dict, inputs: dict[str, np.ndarray]) -> cr.Link:
    root: dict[str, Any] = {}
    for path in spec["params"]:
        parts = path.strip("/").split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = cr.Parameter(bk.asarray(inputs[f"init/{path}"], spec["dtype"]))

    def link(tree: dict[str, Any]) -> cr.Link:
        return cr.Link(**{k: link(v) if isinstance(v, dict) else v for k, v in tree.items()})

    return link(root)


def build_optimizer(spec: dict, model: cr.Link) -> cr.GradientMethod:
    opt = OPTIMIZERS[spec["optimizer"]](lr=spec["lr"], momentum=spec["momentum"]).setup(model)
    return configure_optimizer(spec, opt, model, cr.optimizer_hooks)


def run_steps(
    bk: Backend,
    spec: dict,
    inputs: dict[str, np.ndarray],
    model: cr.Link,
    opt: cr.GradientMethod,
    first: int,
    last: int | None = None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, list]]:
    """Run steps ``first..last`` (1-based); per-step arrays (NumPy) and scalars."""
    params = dict(model.namedparams())
    arrays: dict[str, list[np.ndarray]] = {}
    scalars: dict[str, list] = {"loss_scale": [], "t": [], "epoch": [], "rule_t": []}
    last = len(spec["steps"]) if last is None else last
    for k in range(first, last + 1):
        step = spec["steps"][k - 1]
        if step.get("lr") is not None:
            opt.lr = step["lr"]
        grads = {path: bk.asarray(inputs[f"grad/{path}"][k - 1], spec["dtype"]) for path in step["grads"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if step.get("via_loss"):
                opt.update(cr.ScriptedLoss, {params[p]: g for p, g in grads.items()})
            else:
                model.cleargrads()
                for path, g in grads.items():
                    params[path].grad = g
                opt.update()
        if step.get("new_epoch"):
            opt.new_epoch()
        for path, param in params.items():
            state = param.update_rule.state
            arrays.setdefault(f"param/{path}", []).append(bk.to_numpy(param.array))
            v = np.zeros(param.shape) if state is None else bk.to_numpy(state["v"])
            arrays.setdefault(f"v/{path}", []).append(v)
        scalars["loss_scale"].append(opt.loss_scale)
        scalars["t"].append(opt.t)
        scalars["epoch"].append(opt.epoch)
        scalars["rule_t"].append({p: q.update_rule.t for p, q in params.items()})
    return arrays, scalars
