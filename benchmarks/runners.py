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
    to_native: Callable[[np.ndarray], Any],
    block: Callable[[list[Any]], None] = lambda arrays: None,
    mode: str = "default",
) -> Callable[[list[tuple[int, ...]]], Step]:
    """corrmom_ref's ``opt.update()``; ``mode`` picks the dispatch.

    ``default``: native fast path where the backend has one (torch: fused SGD
    kernel; JAX: jit; NumPy: the Numba loop where Numba is installed);
    ``generic``: fast paths off, the Array API step only; ``donate``: the JAX
    fast path donates the old buffers; ``flat``: the opt-in flat-buffer mode
    (one buffer per dtype and device); ``flat, generic``: that mode with fast
    paths off.
    """

    def make(shapes: list[tuple[int, ...]]) -> Step:
        import corrmom_ref as cr
        from corrmom_ref import flat

        try:
            from corrmom_ref.fast_paths import use_fast_paths
        except ImportError:  # a version before issue 15 (bench-compare against an older revision)
            from corrmom_ref._backends.fast import use_fast_paths  # type: ignore[no-redef]

        params = {f"p{i}": cr.Parameter(to_native(a)) for i, a in enumerate(_arrays(shapes))}
        link = cr.Link(**params)
        for p, g in zip(params.values(), _arrays(shapes), strict=True):
            p.grad = to_native(g)
        target = flat.flatten(link) if mode.startswith("flat") else link
        opt = cr.CorrectedMomentumSGD(lr=LR, momentum=MOMENTUM).setup(target)
        dispatch = {"generic": (False, False), "flat, generic": (False, False), "donate": (True, True)}.get(
            mode, (True, False)
        )
        updated = list(target.params())

        def step() -> None:
            with use_fast_paths(dispatch[0], donate=dispatch[1]):
                opt.update()
            block([p.array for p in updated])

        return step

    return make


reference_numpy = _reference(lambda a: a)
reference_numpy_generic = _reference(lambda a: a, mode="generic")
reference_numpy_flat = _reference(lambda a: a, mode="flat")
reference_numpy_flat_generic = _reference(lambda a: a, mode="flat, generic")


def _torch_reference(mode: str) -> Callable[[list[tuple[int, ...]]], Step]:
    def make(shapes: list[tuple[int, ...]]) -> Step:
        import torch

        return _reference(torch.from_numpy, mode=mode)(shapes)

    return make


def _jax_reference(mode: str) -> Callable[[list[tuple[int, ...]]], Step]:
    def make(shapes: list[tuple[int, ...]]) -> Step:
        import jax

        return _reference(jax.numpy.asarray, jax.block_until_ready, mode=mode)(shapes)

    return make


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


def _corrmom_torch(fused: bool | None) -> Callable[[list[tuple[int, ...]]], Step]:
    """``corrmom_ref.torch.CorrectedMomentumSGD.step()`` in a PyTorch loop (``fused=None``: the default,
    the fused kernel; ``False``: Chainer's in-place ops)."""

    def make(shapes: list[tuple[int, ...]]) -> Step:
        import torch

        import corrmom_ref.torch as crt

        params = [torch.nn.Parameter(torch.from_numpy(a)) for a in _arrays(shapes)]
        for p, g in zip(params, _arrays(shapes), strict=True):
            p.grad = torch.from_numpy(g)
        opt = crt.CorrectedMomentumSGD(params, lr=LR, momentum=MOMENTUM, fused=fused)
        return opt.step

    return make


def _torch_params(shapes: list[tuple[int, ...]]) -> tuple[list[Any], list[Any]]:
    """Parameters with gradients in place, and the gradients' values to restore each step."""
    import torch

    params = [torch.nn.Parameter(torch.from_numpy(a)) for a in _arrays(shapes)]
    for p, g in zip(params, _arrays(shapes), strict=True):
        p.grad = torch.from_numpy(g)
    return params, [p.grad.clone() for p in params]


def _scaled_step(
    make_optimizer: Callable[[list[Any]], Any], make_scaler: Callable[[], Any]
) -> Callable[[list[tuple[int, ...]]], Step]:
    """``scaler.step(optimizer); scaler.update()`` with dynamic loss scaling.

    Unscaling divides the gradients in place, so each step first writes the
    same gradients back (one ``torch._foreach_copy_``, as backward would write
    them; the same copy in both rows of a comparison): without it the
    gradients would shrink into subnormals step after step. ``scaler.scale``
    of a one-element loss stands for the scaled backward.
    """

    def make(shapes: list[tuple[int, ...]]) -> Step:
        import torch

        params, saved = _torch_params(shapes)
        grads = [p.grad for p in params]
        opt, scaler = make_optimizer(params), make_scaler()
        loss = torch.ones(())

        def step() -> None:
            scaler.scale(loss)
            torch._foreach_copy_(grads, saved)
            scaler.step(opt)
            scaler.update()

        return step

    return make


def _torch_fused_sgd(params: list[Any]) -> Any:
    import torch

    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, fused=True)


def _corrmom_torch_default(params: list[Any]) -> Any:
    import corrmom_ref.torch as crt

    return crt.CorrectedMomentumSGD(params, lr=LR, momentum=MOMENTUM)


def _grad_scaler() -> Any:
    import torch

    return torch.amp.GradScaler("cpu")


def _loss_scaler() -> Any:
    import corrmom_ref.torch as crt

    return crt.LossScaler()


def _optax_step(make_tx: Callable[[], Any], donate: bool) -> Callable[[list[tuple[int, ...]]], Step]:
    """An optax transformation's ``update`` + ``apply_updates`` under one ``jax.jit``.

    ``donate``: the parameters and the state are donated
    (``donate_argnums=(0, 1)``), so XLA writes the results into their buffers
    instead of allocating new ones every step.
    """

    def make(shapes: list[tuple[int, ...]]) -> Step:
        import jax
        import optax

        tx = make_tx()
        params = [jax.numpy.asarray(a) for a in _arrays(shapes)]
        grads = [jax.numpy.asarray(a) for a in _arrays(shapes)]
        box = {"params": params, "state": tx.init(params)}

        def update(params: Any, state: Any, grads: Any) -> Any:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        jitted = jax.jit(update, donate_argnums=(0, 1) if donate else ())
        compiled = jitted.lower(box["params"], box["state"], grads).compile()

        def step() -> None:
            # Called through jax.jit, as a training loop calls it: JAX's ahead-of-time
            # ``compiled`` object dispatches through Python whenever the program holds a
            # host callback (loss_scaling's warning), which jax.jit does not.
            box["params"], box["state"] = jitted(box["params"], box["state"], grads)
            jax.block_until_ready(box["params"])

        memory = compiled.memory_analysis()
        # What XLA allocates per step beyond its inputs: temporaries, and outputs not
        # written into a donated input's buffer.
        step.peak_extra_bytes = (  # type: ignore[attr-defined]
            memory.temp_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
        )
        return step

    return make


def _optax_sgd() -> Any:
    import optax

    return optax.sgd(LR, momentum=MOMENTUM)


def _ref_optax() -> Any:
    from corrmom_ref.optax import corrected_momentum_sgd

    return corrected_momentum_sgd(LR, MOMENTUM)


def _ref_optax_loss_scaling() -> Any:
    from corrmom_ref.optax import corrected_momentum_sgd, loss_scaling

    return loss_scaling(corrected_momentum_sgd(LR, MOMENTUM))


#: name -> factory, in the order of the table.
RUNNERS: dict[str, Callable[[list[tuple[int, ...]]], Step]] = {
    "numpy in place (plain)": numpy_plain,
    "ref on numpy": reference_numpy,
    "ref on numpy, generic": reference_numpy_generic,
    "ref on numpy, flat": reference_numpy_flat,
    "ref on numpy, flat, generic": reference_numpy_flat_generic,
    "ref on torch, generic": _torch_reference("generic"),
    "ref on torch": _torch_reference("default"),
    "ref on torch, flat": _torch_reference("flat"),
    "ref on jax, generic": _jax_reference("generic"),
    "ref on jax (jit)": _jax_reference("default"),
    "ref on jax (jit, donated)": _jax_reference("donate"),
    "torch SGD for-loop": torch_loop,
    "torch SGD foreach": torch_foreach,
    "torch SGD fused": torch_fused,
    "corrmom_ref.torch": _corrmom_torch(fused=None),
    "corrmom_ref.torch, generic": _corrmom_torch(fused=False),
    "torch SGD fused + GradScaler": _scaled_step(_torch_fused_sgd, _grad_scaler),
    "corrmom_ref.torch + LossScaler": _scaled_step(_corrmom_torch_default, _loss_scaler),
    "optax sgd, jit, donated": _optax_step(_optax_sgd, donate=True),
    "optax sgd, jit": _optax_step(_optax_sgd, donate=False),
    "ref-optax, jit": _optax_step(_ref_optax, donate=False),
    "ref-optax, jit, donated": _optax_step(_ref_optax, donate=True),
    "ref-optax + loss_scaling, jit, donated": _optax_step(_ref_optax_loss_scaling, donate=True),
}
