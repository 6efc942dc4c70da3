"""Applying a scenario's optimizer settings, shared by the Chainer recorder and the corrmom_ref replay.

Chainer and corrmom_ref have the same optimizer API, so one function
configures either, given the implementation's ``optimizer_hooks`` module.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def configure_optimizer(spec: dict, opt: Any, model: Any, hooks: ModuleType) -> Any:
    """Apply ``spec``'s fp32 update, loss scaling, hooks, overrides and disabled rules to a set-up ``opt``."""
    if spec.get("fp32_update"):
        opt.use_fp32_update()
    scaling = spec.get("loss_scaling")
    if scaling is not None:
        if "scale" in scaling:
            opt.loss_scaling(scale=scaling["scale"])
        else:
            opt.loss_scaling(interval=scaling["interval"])
    for name, kwargs in spec.get("hooks", []):
        opt.add_hook(getattr(hooks, name)(**kwargs))
    params = dict(model.namedparams())
    for path, values in spec.get("overrides", {}).items():
        for key, value in values.items():
            setattr(params[path].update_rule.hyperparam, key, value)
    for path in spec.get("disabled", []):
        params[path].update_rule.enabled = False
    return opt
