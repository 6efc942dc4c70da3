"""One factory per implementation: ``make(shapes) -> step()``, with gradients already in place.

Each factory builds parameters, gradients and the optimizer outside the
timed region and returns a zero-argument callable that performs exactly one
optimizer step. A factory whose library is missing raises ImportError and is
reported as not run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

LR, MOMENTUM = 0.01, 0.9
Step = Callable[[], None]


def _arrays(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


def numpy_plain(shapes: list[tuple[int, ...]]) -> Step:
    """Plain in-place NumPy, Chainer's CPU arithmetic without the machinery (one full-size temporary)."""
    ps, gs = _arrays(shapes), _arrays(shapes)
    vs = [np.zeros_like(p) for p in ps]

    def step() -> None:
        for p, g, v in zip(ps, gs, vs, strict=True):
            v *= MOMENTUM
            v -= g
            p += LR * v

    return step


def _reference(
    to_native: Callable[[np.ndarray], Any], block: Callable[[list[Any]], None] = lambda arrays: None
) -> Callable[[list[tuple[int, ...]]], Step]:
    def make(shapes: list[tuple[int, ...]]) -> Step:
        import corrmom_ref as cr

        params = {f"p{i}": cr.Parameter(to_native(a)) for i, a in enumerate(_arrays(shapes))}
        opt = cr.CorrectedMomentumSGD(lr=LR, momentum=MOMENTUM).setup(cr.Link(**params))
        for p, g in zip(params.values(), _arrays(shapes), strict=True):
            p.grad = to_native(g)

        def step() -> None:
            opt.update()
            block([p.array for p in params.values()])

        return step

    return make


reference_numpy = _reference(lambda a: a)


def reference_torch(shapes: list[tuple[int, ...]]) -> Step:
    import torch

    return _reference(torch.from_numpy)(shapes)


def reference_jax(shapes: list[tuple[int, ...]]) -> Step:
    """The generic (pure, uncompiled) path on JAX: each step dispatches op by op."""
    import jax

    return _reference(jax.numpy.asarray, jax.block_until_ready)(shapes)


def _torch_sgd(**flags: bool) -> Callable[[list[tuple[int, ...]]], Step]:
    def make(shapes: list[tuple[int, ...]]) -> Step:
        import torch

        params = [torch.nn.Parameter(torch.from_numpy(a)) for a in _arrays(shapes)]
        for p, g in zip(params, _arrays(shapes), strict=True):
            p.grad = torch.from_numpy(g)
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, **flags)
        return opt.step

    return make


torch_loop = _torch_sgd(foreach=False)
torch_foreach = _torch_sgd(foreach=True)
torch_fused = _torch_sgd(fused=True)


def optax_jit(shapes: list[tuple[int, ...]]) -> Step:
    """optax.sgd(momentum) under jax.jit with the parameters and state donated."""
    import jax
    import optax

    tx = optax.sgd(LR, momentum=MOMENTUM)
    params = [jax.numpy.asarray(a) for a in _arrays(shapes)]
    grads = [jax.numpy.asarray(a) for a in _arrays(shapes)]
    box = {"params": params, "state": tx.init(params)}

    @jax.jit
    def update(params: Any, state: Any, grads: Any) -> Any:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    update = jax.jit(update, donate_argnums=(0, 1))

    def step() -> None:
        box["params"], box["state"] = update(box["params"], box["state"], grads)
        jax.block_until_ready(box["params"])

    return step


#: name -> factory, in the order of the table.
RUNNERS: dict[str, Callable[[list[tuple[int, ...]]], Step]] = {
    "numpy in place (plain)": numpy_plain,
    "ref on numpy": reference_numpy,
    "ref on torch": reference_torch,
    "ref on jax": reference_jax,
    "torch SGD for-loop": torch_loop,
    "torch SGD foreach": torch_foreach,
    "torch SGD fused": torch_fused,
    "optax sgd, jit, donated": optax_jit,
}
