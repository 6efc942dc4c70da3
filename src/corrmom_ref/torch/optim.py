r"""Chainer's momentum optimizers as ``torch.optim.Optimizer`` subclasses.

:class:`CorrectedMomentumSGD` is Goyal et al.'s eq. (9) in Chainer's sign:
the buffer :math:`v` holds :math:`-u` and starts at zero,

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

and :class:`MomentumSGD` is eq. (10), :math:`v \leftarrow m v - \eta g;\ p \leftarrow p + v`.
Both step through the reference's kernels (``corrmom_ref._backends.dispatch``):
with ``fused=True`` (the default where PyTorch has it) one
``torch._fused_sgd_`` call per group, dtype and device, whose multiply-adds
are one rounding per product away from Chainer's; with ``fused=False`` the
in-place operations in Chainer's order (``v *= m; v -= g; p += lr * v``),
bitwise equal to Chainer's NumPy arithmetic.

One :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` does what Chainer's ``update()`` does after
backward, in its order:

1. every parameter whose ``grad`` is ``None`` gets a zero gradient (so it
   still moves by its momentum, as in Chainer);
2. with ``check_finite`` (dynamic loss scaling), any non-finite gradient
   marks the step skipped and warns, naming the parameter;
3. the pre hooks of :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.add_hook`, each followed by
   step 1 again;
4. ``t += 1``, also on a skipped step;
5. unless skipped, per parameter: its own ``t += 1``, its buffer created at
   zero on first use, the gradient divided by ``loss_scale`` in place, and
   the update with its group's ``lr`` and ``momentum``;
6. step 1 again, then the post hooks.

Hooks registered with PyTorch's ``register_step_pre_hook`` /
``register_step_post_hook`` run around all of that, as for any optimizer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import torch
from array_api_compat import array_namespace

from corrmom_ref._backends import torch_update
from corrmom_ref._backends.dispatch import corrected_steps as corrected_momentum_steps
from corrmom_ref._backends.dispatch import momentum_steps
from corrmom_ref._backends.switch import use_fast_paths
from corrmom_ref._finite import finite_flags
from corrmom_ref._hooks import HookRegistry

__all__ = ["CorrectedMomentumSGD", "HookHandle", "MomentumSGD"]

Timing = Literal["pre", "post", "auto"]


class HookHandle:
    """What :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.add_hook` returns: ``remove()`` unregisters the hook.

    Attributes:
        name: The hook's registration name.
    """

    def __init__(self, optimizer: _ChainerMomentum, name: str) -> None:
        self._optimizer = optimizer
        self.name = name

    def remove(self) -> None:
        """Unregister the hook (``KeyError`` if it was removed already)."""
        self._optimizer.remove_hook(self.name)


def _check_number(value: Any, what: str) -> float:
    """``value`` as a finite float; ``TypeError``/``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(
                f"{what} must be a number or a one-element tensor, got shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {number}")
    return number


class _ChainerMomentum(torch.optim.Optimizer):
    """The machinery shared by :class:`CorrectedMomentumSGD` and :class:`MomentumSGD`."""

    #: Whether the update is eq. (9) (``True``) or eq. (10) (``False``).
    _corrected: bool = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        momentum: float = 0.9,
        *,
        fused: bool | None = None,
        fp32_master: bool = False,
    ) -> None:
        lr = _check_number(lr, "lr")
        momentum = _check_number(momentum, "momentum")
        if fused and not torch_update.available():
            raise RuntimeError("fused=True, but this PyTorch has no torch._fused_sgd_ kernel")
        super().__init__(params, {"lr": lr, "momentum": momentum})
        #: Whether steps run the fused kernel where it applies (see the module docstring).
        self.fused: bool = torch_update.available() if fused is None else bool(fused)
        #: float16 parameters are updated through a float32 master copy (Chainer's ``use_fp32_update``).
        self.fp32_master: bool = bool(fp32_master)
        #: Optimizer steps taken, skipped ones included (Chainer's ``t``).
        self.t: int = 0
        #: Epoch count (Chainer's ``epoch``; :meth:`new_epoch` advances it).
        self.epoch: int = 0
        #: Whether :meth:`new_epoch` expects ``auto=True`` (as Chainer's updaters call it).
        self.use_auto_new_epoch: bool = False
        #: Whether the last :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` was skipped for a non-finite gradient.
        self.last_step_skipped: bool = False
        self._chainer_hooks = HookRegistry(invalid_auto_timing="pre")
        self._param_hooks: dict[torch.Tensor, HookRegistry] = {}
        self._step_loss_scale: float | None = None
        self._xp: Any = None

    # -- hooks with Chainer's naming and timing ------------------------------------

    def add_hook(
        self, hook: Callable[..., Any], name: str | None = None, timing: Timing = "auto"
    ) -> HookHandle:
        """Register ``hook`` to run inside :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` at Chainer's ``pre`` or ``post`` point.

        A hook with a truthy ``call_for_each_param`` attribute is called as
        ``hook(optimizer, param)`` for every parameter (group order), any other
        as ``hook(optimizer)``; after each call, cleared gradients are zeros
        again. ``timing='auto'`` takes ``hook.timing`` (``'pre'`` if absent;
        an invalid one warns and means ``'pre'``). The name is ``name``, else
        ``hook.name``, else ``hook.__name__``.

        Raises:
            TypeError: ``hook`` is not callable.
            ValueError: bad ``timing``, or no name can be found.
            KeyError: the name is taken.
        """
        self._chainer_hooks.add(hook, name, timing)
        resolved = name if name is not None else getattr(hook, "name", getattr(hook, "__name__", None))
        return HookHandle(self, str(resolved))

    def remove_hook(self, name: str) -> None:
        """Unregister the hook called ``name`` (``KeyError`` if there is none)."""
        self._chainer_hooks.remove(name)

    def add_param_hook(
        self, param: torch.Tensor, hook: Callable[..., Any], name: str | None = None, timing: Timing = "auto"
    ) -> None:
        """Register ``hook`` on one parameter, like a hook on Chainer's update rule of that parameter.

        It runs inside :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` as ``hook(optimizer, param)``, just before
        (``pre``) or after (``post``) that parameter's update, after its
        gradient was unscaled; with ``fp32_master`` a float16 parameter's hooks
        get the float32 master, whose ``grad`` is the float32 gradient. A group
        with such hooks is updated one parameter at a time. Naming and errors
        as for :meth:`add_hook`, except that an invalid ``hook.timing`` under
        ``'auto'`` files the hook as ``post`` (Chainer's update rules do).

        Raises:
            KeyError: ``param`` is not one of this optimizer's parameters, or the name is taken.
        """
        if not any(param is q for q in self._params()):
            raise KeyError("the tensor is not a parameter of this optimizer")
        registry = self._param_hooks.get(param) or HookRegistry(invalid_auto_timing="post")
        registry.add(hook, name, timing)
        self._param_hooks[param] = registry

    def remove_param_hook(self, param: torch.Tensor, name: str) -> None:
        """Unregister the hook ``name`` of ``param`` (``KeyError`` if there is none)."""
        registry = self._param_hooks.get(param)
        if registry is None:
            raise KeyError(f"no hook named {name!r} on this parameter")
        registry.remove(name)
        if not registry:
            del self._param_hooks[param]

    def _call_hooks(self, timing: str) -> None:
        for hook in self._chainer_hooks.of(timing):
            if getattr(hook, "call_for_each_param", False):
                for p in list(self._params()):
                    hook(self, p)
                    self._reallocate()
            else:
                hook(self)
                self._reallocate()

    # -- loss scale seen by hooks ----------------------------------------------------------

    @property
    def loss_scale(self) -> float | None:
        """The loss scale of the current :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` (``None``: none, or outside a step).

        As Chainer's ``param._loss_scale``, it stays set while parameter hooks
        run after the gradient was unscaled, except for a float32 master.

        Chainer's :class:`~corrmom_ref.torch.WeightDecay` multiplies its rate by it.
        """
        return self._step_loss_scale

    # -- epochs -------------------------------------------------------------------

    def new_epoch(self, auto: bool = False) -> None:
        """``epoch += 1``; ``RuntimeError`` when ``auto`` disagrees with :attr:`use_auto_new_epoch`."""
        if self.use_auto_new_epoch and not auto:
            raise RuntimeError("invalid new_epoch call: use_auto_new_epoch is set, call with auto=True")
        if auto and not self.use_auto_new_epoch:
            raise RuntimeError("invalid new_epoch call with auto=True: use_auto_new_epoch is not set")
        self.epoch += 1

    # -- the step ---------------------------------------------------------------------

    def _params(self) -> Iterator[torch.Tensor]:
        for group in self.param_groups:
            yield from group["params"]

    def _named(self) -> Iterator[tuple[str, torch.Tensor]]:
        for gi, group in enumerate(self.param_groups):
            names = group.get("param_names")
            for pi, p in enumerate(group["params"]):
                yield (names[pi] if names is not None else f"param {pi} of group {gi}"), p

    def _reallocate(self, check_dense: bool = False) -> None:
        """Give every parameter without a gradient a zero one; with ``check_dense``, first
        raise ``TypeError`` (changing nothing) if a gradient is sparse."""
        missing = []
        for p in self._params():
            g = p.grad
            if g is None:
                missing.append(p)
            elif check_dense and g.is_sparse:
                name = next(n for n, q in self._named() if q is p)
                raise TypeError(f"{name} has a sparse gradient; Chainer's momentum SGD takes dense ones")
        for p in missing:
            p.grad = torch.zeros_like(p)

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        *,
        loss_scale: float | None = None,
        check_finite: bool = False,
    ) -> Any:
        """One update in Chainer's order (see the module docstring); returns ``closure()``'s loss.

        Args:
            closure: Re-evaluates the model and returns the loss (run with
                gradients on, before anything else).
            loss_scale: The gradients are this multiple of the true ones;
                each is divided by it in place before its update (what
                :class:`~corrmom_ref.torch.LossScaler` passes).
            check_finite: Skip the update (``t`` still advances) and warn if
                any gradient is not finite: dynamic loss scaling.

        Raises:
            TypeError, ValueError: a group's ``lr`` or ``momentum`` is not a
                finite number, or a gradient is sparse (before anything changes).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hypers = self._hyperparameters()
        scale = None if loss_scale is None else _check_number(loss_scale, "loss_scale")
        self._reallocate(check_dense=True)
        skipped = check_finite and self._nonfinite_warned(scale)
        self._step_loss_scale = scale
        try:
            if self._chainer_hooks.names("pre"):
                self._call_hooks("pre")
                hypers = self._hyperparameters()  # a hook may have changed them: Chainer reads them now
            self.t += 1
            if not skipped:
                for group, (lr, m) in zip(self.param_groups, hypers, strict=True):
                    self._update_group(group, lr, m, scale)
            if self._param_hooks:  # only a hook can have cleared a gradient since the first pass
                self._reallocate()
            self._call_hooks("post")
        finally:
            self._step_loss_scale = None
        self.last_step_skipped = skipped
        return loss

    def _hyperparameters(self) -> list[tuple[float, float]]:
        """Every group's ``(lr, momentum)``, checked (``TypeError``/``ValueError`` naming the group)."""
        return [
            (
                _check_number(g["lr"], f"lr of group {i}"),
                _check_number(g["momentum"], f"momentum of group {i}"),
            )
            for i, g in enumerate(self.param_groups)
        ]

    def _nonfinite_warned(self, scale: float | None) -> bool:
        named = list(self._named())
        flags = finite_flags([p.grad for _, p in named])
        bad = [name for (name, _), finite in zip(named, flags, strict=True) if not finite]
        for name in bad:
            warnings.warn(
                f"Non finite number found in param.grad of {name} (iteration: {self.t}, loss_scale: {scale})",
                stacklevel=4,
            )
        return bool(bad)

    def _update_group(self, group: dict[str, Any], lr: float, m: float, scale: float | None) -> None:
        """Update every parameter of ``group``: batched, or one by one when any has parameter hooks."""
        one_by_one = bool(self._param_hooks) and any(p in self._param_hooks for p in group["params"])
        buckets: dict[torch.dtype, tuple[list[Any], list[Any], list[Any]]] = {}
        masters: list[tuple[torch.Tensor, torch.Tensor]] = []
        plain = scale is None and not one_by_one
        state_of = self.state
        for p in group["params"]:
            state = state_of[p]
            v = state.get("v") if plain else None
            if v is not None and not (self.fp32_master and p.dtype == torch.float16):
                # the common step: state exists, nothing to unscale, no master, no hooks
                state["t"] += 1
                target, grad = p, p.grad
            else:
                target, grad, v = self._prepare(p, scale)
                if target is not p:
                    masters.append((p, target))
                if one_by_one:
                    self._update_hooked(p, target, grad, v, lr, m)
                    continue
            ps, gs, vs = buckets.setdefault(target.dtype, ([], [], []))
            ps.append(target)  # stepped in place under no_grad; the kernels take devices as they come
            gs.append(grad)
            vs.append(v)
        for ps, gs, vs in buckets.values():
            self._kernel(ps, gs, vs, lr, m)
        for p, master in masters:
            p.copy_(master)

    def _prepare(
        self, p: torch.Tensor, scale: float | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chainer's rule preamble for ``p``: ``t += 1``, the master, the zero buffer, the unscaled gradient.

        Returns the tensor to update (``p`` or its float32 master), its gradient and its buffer.
        """
        state = self.state[p]
        state["t"] = state.get("t", 0) + 1
        grad = p.grad
        assert grad is not None  # reallocated
        target = p
        if self.fp32_master and p.dtype == torch.float16:
            master = state.get("master")
            if master is None:
                master = state["master"] = p.detach().float()
            target, grad = master, grad.float()
        v = state.get("v")
        if v is None:
            v = state["v"] = torch.zeros_like(target, memory_format=torch.preserve_format)
        if scale is not None:
            grad.div_(scale)
        return target, grad, v

    def _update_hooked(
        self, p: torch.Tensor, target: torch.Tensor, grad: torch.Tensor, v: torch.Tensor, lr: float, m: float
    ) -> None:
        """One parameter's update between its own pre and post hooks (Chainer's update-rule hooks)."""
        hooks = self._param_hooks.get(p)
        holder = p
        scale = self._step_loss_scale
        if target is not p:  # the hooks see the float32 master and its gradient, as in Chainer,
            holder = target  # where that master carries no loss scale
            holder.grad = grad
            self._step_loss_scale = None
        try:
            if hooks is not None:
                for hook in hooks.of("pre"):
                    hook(self, holder)
            if holder.grad is not None:  # a hook may have cleared it: Chainer then skips the update
                self._kernel([target], [holder.grad], [v], lr, m)
            if hooks is not None:
                for hook in hooks.of("post"):
                    hook(self, holder)
        finally:
            if holder is not p:
                holder.grad = None
                self._step_loss_scale = scale

    def _kernel(self, ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float) -> None:
        if torch.compiler.is_compiling():
            _foreach_step(self._corrected, ps, gs, vs, lr, m)
            return
        if self._xp is None:
            self._xp = array_namespace(ps[0])
        xp = self._xp
        if self._corrected:
            with use_fast_paths(self.fused):  # PyTorch tensors are stepped in place
                corrected_momentum_steps(xp, ps, gs, vs, lr, m)
        else:
            momentum_steps(xp, ps, gs, vs, lr, m)

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's state dict (per parameter ``v``, ``t`` and any ``master``) plus ``chainer``: ``t``, ``epoch``."""
        out = super().state_dict()
        out["chainer"] = {"t": self.t, "epoch": self.epoch}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (float32 masters stay float32).

        The buffers are copied: loading another live optimizer's state dict
        leaves the two independent (PyTorch's base class would share them).
        """
        state_dict = dict(state_dict)
        counters = state_dict.pop("chainer", {"t": 0, "epoch": 0})
        state_dict["state"] = {
            k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in s.items()}
            for k, s in state_dict["state"].items()
        }
        masters = {k: s["master"] for k, s in state_dict["state"].items() if "master" in s}
        super().load_state_dict(state_dict)
        if masters:
            params = list(self._params())
            for k, master in masters.items():
                p = params[k]
                self.state[p]["master"] = master.to(device=p.device, dtype=torch.float32).clone()
        self.t = int(counters["t"])
        self.epoch = int(counters["epoch"])


def _foreach_step(corrected: bool, ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float) -> None:
    """The generic step in Chainer's order with ``torch._foreach_*`` ops, which ``torch.compile`` traces.

    Each operation rounds as the generic in-place step does (no multiply-add
    contraction in eager mode), so the numbers are those of ``fused=False``.
    """
    torch._foreach_mul_(vs, m)
    if corrected:  # v *= m; v -= g; p += lr * v
        torch._foreach_sub_(vs, gs)
        torch._foreach_add_(ps, torch._foreach_mul(vs, lr))
    else:  # v *= m; v -= lr * g; p += v
        torch._foreach_sub_(vs, torch._foreach_mul(gs, lr))
        torch._foreach_add_(ps, vs)


class CorrectedMomentumSGD(_ChainerMomentum):
    r"""Chainer's ``CorrectedMomentumSGD`` as a PyTorch optimizer: eq. (9) in Chainer's sign.

    .. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v, \qquad v_0 = 0

    so ``-v`` is ``torch.optim.SGD``'s ``momentum_buffer`` except on the first
    step, where PyTorch starts the buffer at ``g`` (the same first step
    without dampening, different ever after dampening). A learning-rate
    change acts on the next step only (the momentum correction is built in).

    Args:
        params: Parameters or param groups, as for any ``torch.optim.Optimizer``
            (``named_parameters()`` too: the names then appear in warnings and
            snapshots).
        lr: :math:`\eta` (per group).
        momentum: :math:`m` (per group).
        fused: Run the fused kernel (``torch._fused_sgd_``) where the inputs
            allow; ``False``: Chainer's in-place operations, bitwise equal to
            Chainer on the CPU. Default: fused where PyTorch has the kernel.
        fp32_master: Update float16 parameters through a float32 copy.
    """

    _corrected = True


class MomentumSGD(_ChainerMomentum):
    r"""Chainer's ``MomentumSGD`` as a PyTorch optimizer: eq. (10), uncorrected.

    .. math:: v \leftarrow m v - \eta g, \qquad p \leftarrow p + v, \qquad v_0 = 0

    The buffer carries the old learning rate, so after an ``lr`` change the
    steps differ from :class:`CorrectedMomentumSGD` until the old velocity
    has decayed. Always Chainer's in-place operations (no fused kernel exists
    for this form); ``fused`` is accepted and ignored for the same signature.

    Args:
        params: Parameters or param groups.
        lr: :math:`\eta` (per group).
        momentum: :math:`m` (per group).
        fused: Ignored (see above).
        fp32_master: Update float16 parameters through a float32 copy.
    """

    _corrected = False
