"""The setup check of data-parallel training: every rank must build the same model and optimizer.

Data-parallel training averages gradients element by element over flat
buffers, so a rank whose model differs in a way the buffer does not show (a
parameter of shape (3, 4) where rank 0 has (4, 3), a parameter named ``V``
where rank 0 has ``W``) or whose optimizer differs (another ``lr``) trains on
silently, and a rank whose buffer has another size or dtype leaves the others
waiting. :func:`check_same_setup` compares, in one collective (an allgather),
each rank's :func:`describe_setup`: the optimizer's class, its
hyperparameters (root entries, values compared exactly) and whether it
updates in float32, and every parameter's name, shape and dtype in
``namedparams()`` order. Every rank gets every description, so every rank
reaches the same verdict and raises the same error (naming the ranks that
differ from rank 0 and how) or none.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["check_same_setup", "describe_setup"]

#: Differences listed per rank in the error message.
_SHOWN = 5


def _dtype_name(dtype: Any) -> str:
    # "float32" for NumPy, "torch.float32" for PyTorch: compare the bare name.
    return str(dtype).rsplit(".", 1)[-1]


def _value(value: Any) -> str:
    # 0.1, np.float64(0.1) and a 0-d array of 0.1 update alike: compare as Python floats.
    if isinstance(value, bool):
        return repr(value)
    try:
        return repr(float(value))
    except (TypeError, ValueError, OverflowError):
        return repr(value)


def describe_setup(optimizer: Any, link: Any) -> dict[str, Any]:
    """What must agree between ranks: optimizer class, hyperparameters, parameters (JSON-ready)."""
    hyperparams = optimizer.hyperparam.get_dict()
    return {
        "optimizer": type(optimizer).__name__,
        "hyperparameters": {name: _value(hyperparams[name]) for name in sorted(hyperparams)},
        "fp32 update": bool(getattr(optimizer, "_use_fp32_update", False)),
        "parameters": [
            [name, list(param.array.shape), _dtype_name(param.array.dtype)]
            for name, param in link.namedparams()
        ],
    }


def _differences(reference: dict[str, Any], other: dict[str, Any], rank: int) -> list[str]:
    """How rank ``rank``'s description differs from rank 0's (empty if it does not)."""
    found = []
    for key in ("optimizer", "fp32 update"):
        if reference[key] != other[key]:
            found.append(f"{key} {reference[key]} on rank 0, {other[key]} on rank {rank}")
    mine, theirs = reference["hyperparameters"], other["hyperparameters"]
    for name in sorted(set(mine) | set(theirs)):
        if mine.get(name) != theirs.get(name):
            found.append(
                f"hyperparameter {name} = {mine.get(name, '(unset)')} on rank 0, "
                f"{theirs.get(name, '(unset)')} on rank {rank}"
            )
    params0 = {name: (shape, dtype) for name, shape, dtype in reference["parameters"]}
    params = {name: (shape, dtype) for name, shape, dtype in other["parameters"]}
    for name in [n for n, _, _ in reference["parameters"]] + [n for n, _, _ in other["parameters"]]:
        if name not in params:
            found.append(f"parameter {name} on rank 0 only (not on rank {rank})")
        elif name not in params0:
            found.append(f"parameter {name} on rank {rank} only (not on rank 0)")
        elif params0[name] != params[name]:
            (shape0, dtype0), (shape, dtype) = params0[name], params[name]
            found.append(
                f"parameter {name}: {tuple(shape0)} {dtype0} on rank 0, {tuple(shape)} {dtype} on rank {rank}"
            )
    if not found and reference["parameters"] != other["parameters"]:
        found.append(f"the parameters come in another order on rank {rank}")
    return list(dict.fromkeys(found))  # a name seen twice above is listed once


def check_same_setup(communicator: Any, optimizer: Any, link: Any) -> None:
    """Raise on every rank unless all ranks describe the same setup (one allgather).

    Raises:
        ValueError: Some rank's :func:`describe_setup` differs from rank 0's;
            the message lists, for each such rank, how.
    """
    mine = json.dumps(describe_setup(optimizer, link), sort_keys=True).encode()
    gathered = communicator.allgather_bytes(mine, what="the setup check of the multi-node optimizer")
    if all(other == gathered[0] for other in gathered):
        return
    descriptions = [json.loads(other) for other in gathered]
    lines = []
    for rank in range(1, len(descriptions)):
        found = _differences(descriptions[0], descriptions[rank], rank)
        if found:
            more = f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
            lines.append(f"rank {rank} differs from rank 0: " + "; ".join(found[:_SHOWN]) + more)
    raise ValueError(
        "the ranks do not set up the same training (every rank must build the same model and "
        "optimizer): " + " | ".join(lines)
    )
