"""Run optimizer scenarios in real Chainer 7.8.1 and record what happens.

A *scenario* is a JSON-able dict plus a set of input arrays; the same
scenario is replayed in corrmom_ref by ``tests/chainer_agreement/test_recorded_scenarios.py``.

Spec keys:

* ``optimizer``: ``"CorrectedMomentumSGD"`` or ``"MomentumSGD"``; ``lr``, ``momentum``.
* ``dtype``: dtype of every parameter; ``params``: ``{path: shape}``, paths
  like ``/W`` or ``/l1/b`` (one level of child links).
* ``fp32_update``: call ``optimizer.use_fp32_update()`` after setup.
* ``loss_scaling``: ``None``, ``{"interval": n}`` (dynamic) or ``{"scale": s}`` (static).
* ``hooks``: ``[[class name in chainer.optimizer_hooks, {kwargs}], ...]``,
  added in order with the default timing.
* ``overrides``: ``{path: {hyperparameter: value}}`` on that parameter's rule.
* ``disabled``: paths whose rules are disabled (``rule.enabled = False``).
* ``steps``: a list of ``{"lr": float or None, "via_loss": bool, "grads": [paths],
  "new_epoch": bool}``:
  set ``optimizer.lr`` if given; the listed paths get gradient
  ``grad/<path>[k - 1]`` from the inputs (the others have none); with ``via_loss`` the gradients come
  from ``update(lossfun)`` with the loss ``sum_p sum(p * G_p)``, so that
  Chainer's backward applies the loss scale; else they are assigned to
  ``param.grad`` and ``update()`` is called; then ``new_epoch()`` if asked.
* ``snapshot_after``: the step after which model and optimizer are saved.

Inputs: ``init/<path>`` and ``grad/<path>`` (one row per step; rows of
steps that do not list the path are unused zeros).

Records (``<prefix>/param/<path>``, ``<prefix>/v/<path>``: one row per step
run; JSON lists of loss scale, ``t``, ``epoch`` and rule ``t`` per step) for the uninterrupted run
(prefix ``run``) and for a run resumed in a fresh process state from the
Chainer snapshots (prefix ``resumed``; Chainer does not save the loss scale,
so the two differ under dynamic loss scaling).

Usage as a script (for the reverse check: corrmom_ref saved the snapshots)::

    python chainer_scenarios.py resume SPEC.json INPUTS.npz MODEL.npz OPTIMIZER.npz OUT.npz [...]

(any number of five-file groups) writes each resumed run into its ``OUT.npz``,
the scalars as UTF-8 JSON bytes under ``scalars.json``.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import chainer
import chainer.functions as F
import numpy as np
from scenario_spec import configure_optimizer


def build_model(spec: dict, inputs: dict[str, np.ndarray]) -> chainer.Chain:
    """A Chain with the spec's parameters (and one level of child Chains)."""
    root = chainer.Chain()
    children: dict[str, chainer.Chain] = {}
    for path in spec["params"]:
        parts = path.strip("/").split("/")
        owner = root
        if len(parts) == 2:
            if parts[0] not in children:
                children[parts[0]] = chainer.Chain()
                with root.init_scope():
                    setattr(root, parts[0], children[parts[0]])
            owner = children[parts[0]]
        elif len(parts) != 1:
            raise ValueError(f"unsupported path {path}")
        with owner.init_scope():
            setattr(owner, parts[-1], chainer.Parameter(inputs[f"init/{path}"].copy()))
    return root


def build_optimizer(spec: dict, model: chainer.Chain) -> chainer.Optimizer:
    cls = getattr(chainer.optimizers, spec["optimizer"])
    opt = cls(lr=spec["lr"], momentum=spec["momentum"])
    opt.setup(model)
    return configure_optimizer(spec, opt, model, chainer.optimizer_hooks)


def run_steps(
    spec: dict,
    inputs: dict[str, np.ndarray],
    model: chainer.Chain,
    opt: chainer.Optimizer,
    first: int,
    prefix: str,
    arrays: dict[str, np.ndarray],
    scalars: dict[str, list],
    on_step: Any = None,
) -> None:
    """Run steps ``first..len(steps)`` (1-based), recording after each."""
    params = dict(model.namedparams())
    for k in range(first, len(spec["steps"]) + 1):
        step = spec["steps"][k - 1]
        if step.get("lr") is not None:
            opt.lr = step["lr"]
        grads = {path: inputs[f"grad/{path}"][k - 1] for path in step["grads"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN warnings and fp16 overflow in forward
            if step.get("via_loss"):

                def lossfun(grads: dict[str, np.ndarray]) -> chainer.Variable:
                    terms = [F.sum(params[p] * chainer.Variable(g.copy())) for p, g in grads.items()]
                    return sum(terms[1:], terms[0])

                opt.update(lossfun, grads)
            else:
                model.cleargrads()
                for path, g in grads.items():
                    params[path].grad = g.copy()
                opt.update()
        if step.get("new_epoch"):
            opt.new_epoch()
        for path, param in params.items():
            state = param.update_rule.state
            v = np.zeros_like(param.array) if state is None else state["v"]
            for key, value in ((f"{prefix}/param/{path}", param.array), (f"{prefix}/v/{path}", v)):
                arrays[key] = np.concatenate([arrays.get(key, value[None][:0]), value.copy()[None]])
        scalars.setdefault("loss_scale", []).append(opt._loss_scale)
        scalars.setdefault("t", []).append(int(opt.t))
        scalars.setdefault("epoch", []).append(int(opt.epoch))
        scalars.setdefault("rule_t", []).append({p: int(q.update_rule.t) for p, q in params.items()})
        if on_step is not None:
            on_step(k, model, opt)


def resume(
    spec: dict, inputs: dict[str, np.ndarray], model_file: Any, optimizer_file: Any, prefix: str
) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Fresh model and optimizer, load the snapshots, run the remaining steps."""
    model = build_model(spec, inputs)
    opt = build_optimizer(spec, model)
    chainer.serializers.load_npz(model_file, model)
    chainer.serializers.load_npz(optimizer_file, opt)
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, list] = {}
    run_steps(spec, inputs, model, opt, spec["snapshot_after"] + 1, prefix, arrays, scalars)
    return arrays, scalars


def main(argv: list[str]) -> None:
    jobs = argv[2:]
    if len(argv) < 7 or argv[1] != "resume" or len(jobs) % 5:
        raise SystemExit(__doc__)
    for i in range(0, len(jobs), 5):
        spec_file, inputs_file, model_file, optimizer_file, out_file = jobs[i : i + 5]
        with open(spec_file) as f:
            spec = json.load(f)["spec"]
        with np.load(inputs_file) as npz:
            inputs = {k: npz[k] for k in npz.files}
        arrays, scalars = resume(spec, inputs, model_file, optimizer_file, "resumed")
        arrays["scalars.json"] = np.frombuffer(json.dumps(scalars).encode(), dtype=np.uint8)
        np.savez(out_file, **arrays)


if __name__ == "__main__":
    main(sys.argv)
