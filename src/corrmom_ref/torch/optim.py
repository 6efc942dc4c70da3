r"""Chainer's momentum optimizers as ``torch.optim.Optimizer`` subclasses.

:class:`CorrectedMomentumSGD` is Goyal et al.'s eq. (9) in Chainer's sign:
the buffer :math:`v` holds :math:`-u` and starts at zero,

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

and :class:`MomentumSGD` is eq. (10), :math:`v \leftarrow m v - \eta g;\ p \leftarrow p + v`.
Each group's parameters are stepped in lists of one device and dtype by one
of three steps (``corrmom_ref.torch._steps``, whose ``choose`` says which), as
``torch.optim.SGD`` has them, with no detour through the Array API dispatch:

* the fused kernel (``fused=None``, the default, wherever it takes the
  parameters: float32 and float64 on PyTorch's fused devices, contiguous,
  ``momentum != 0``; ``fused=True`` refuses other parameters, naming them):
  one ``torch._fused_sgd_`` call per list, whose multiply-adds are one
  rounding per product away from Chainer's;
* ``fused=False``: Chainer's in-place operations (``v *= m; v -= g; p += lr * v``),
  bitwise equal to Chainer's NumPy arithmetic, tensor by tensor (the CPU's
  default) or as ``torch._foreach_*`` calls over the list (``foreach=True``,
  the default off the CPU; the same bits for float32 and float64).

Under a loss scale each gradient is divided by it in place, by a true
division (on the CPU the fused kernel divides itself, by ``grad_scale``).

One :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.step` does what Chainer's ``update()`` does after
backward, in its order:

1. every trainable parameter whose ``grad`` is ``None`` gets a zero gradient
   (so it still moves by its momentum, as in Chainer);
2. with ``check_finite`` (dynamic loss scaling), any non-finite gradient
   marks the step skipped and warns
   :class:`~corrmom_ref.loss_scaling.NonFiniteGradientWarning`, naming the
   parameter, attributed to the caller's line;
3. the pre hooks of :meth:`~corrmom_ref.torch.CorrectedMomentumSGD.add_hook`, each followed by
   step 1 again;
4. ``t += 1``, also on a skipped step;
5. unless skipped, per trainable parameter: its own ``t += 1``, its buffer created at
   zero on first use, the gradient divided by ``loss_scale`` in place, and
   the update with its group's ``lr`` and ``momentum``;
6. step 1 again, then the post hooks.

Every check runs first (the reference's rules and messages, from
``corrmom_ref._validation`` and ``corrmom_ref._scalar_checks``): a step that raises
changes nothing.

Frozen parameters: ``requires_grad=False`` is Chainer's disabled update rule.
Such a parameter is never updated, gets no state, no ``t`` advance and no
zero gradient; unfrozen, it resumes with the state it had. Chainer's hooks
and non-finite check visit every parameter, disabled ones too, so a frozen
parameter that still holds a gradient is seen by them here as well; one
without a gradient (the usual case, since backward computes none) is skipped
by per-parameter hooks and adds nothing to ``GradientClipping``'s norm, where
Chainer would have given it a zero gradient first.

Under ``torch.compile`` the bookkeeping (checks, reallocation, the
non-finite check, hooks, counters, state) runs eagerly outside the graph and
only the arithmetic of the multi-tensor step is traced, with the numbers of
``fused=False``; nothing in a loop recompiles once the first learning-rate,
loss-scale and skipped-step variants are compiled.

FSDP2 (DTensor parameters): each rank steps its local shards with the same
kernels, fused or not, and the non-finite check of dynamic loss scaling
agrees its verdict over the parameters' device mesh (one ``all_reduce`` of
one number per gradient), so a NaN in one rank's shard skips the step on
every rank (``docs/distributed.md``, "FSDP2").

Hooks registered with PyTorch's ``register_step_pre_hook`` /
``register_step_post_hook`` run around all of that, as for any optimizer.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from operator import attrgetter, is_
from typing import Any, Literal, cast

import torch
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from corrmom_ref._finite import finite_flags
from corrmom_ref._hooks import HookRegistry
from corrmom_ref._scalar_checks import check_counter, check_loss_scale
from corrmom_ref._step.reference import Form
from corrmom_ref._validation import check_nonnegative_finite, check_parameter_dtype
from corrmom_ref.loss_scaling import NonFiniteGradientWarning
from corrmom_ref.torch import _steps

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


def _hyperparameter(value: Any, name: str, where: str) -> float:
    """``value`` as a Python float by the reference's rule (finite, >= 0; its messages).

    A one-element tensor stands for its number (schedulers may keep ``lr`` as one).
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return check_nonnegative_finite(name, value, where)


#: torch.optim.SGD's options that change its update, with the value at which they change nothing,
#: and what to use instead in Chainer's optimizer.
_SGD_OPTIONS: dict[str, tuple[Any, str]] = {
    "weight_decay": (
        0,
        "Chainer's weight decay is a hook: optimizer.add_hook(corrmom_ref.torch.WeightDecay(rate))",
    ),
    "dampening": (0, "Chainer's momentum SGD has no dampening"),
    "nesterov": (False, "Chainer's momentum SGD has no Nesterov form"),
    "maximize": (False, "Chainer's optimizers minimise: negate the loss"),
}
#: Options of PyTorch's other optimizers (a group holding one was made for another optimizer).
_OTHER_OPTIONS = frozenset(
    {
        "alpha",
        "amsgrad",
        "betas",
        "centered",
        "decoupled_weight_decay",
        "eps",
        "etas",
        "initial_accumulator_value",
        "lambd",
        "lr_decay",
        "momentum_decay",
        "rho",
        "step_sizes",
        "t0",
    }
)
#: Per-parameter state keys this optimizer keeps.
_STATE_KEYS = frozenset({"t", "v", "master"})
#: The keys of :data:`_SGD_OPTIONS` and ``differentiable`` (whether a group needs a closer look).
_OPTION_KEYS = frozenset(_SGD_OPTIONS) | _OTHER_OPTIONS | {"differentiable"}
_INF = float("inf")
_is_contiguous = torch.Tensor.is_contiguous
_grad_of = attrgetter("grad")
_dtype_of = attrgetter("dtype")
_is_cpu = attrgetter("is_cpu")
_is_none = partial(is_, None)
_is_sparse = attrgetter("is_sparse")
_FUSED_DEVICES: frozenset[str] | None = None


def _fused_devices() -> frozenset[str]:
    """PyTorch's fused-kernel device types, asked once."""
    global _FUSED_DEVICES
    if _FUSED_DEVICES is None:
        _FUSED_DEVICES = frozenset(_steps.fused_devices())
    return _FUSED_DEVICES


def _dtensor_class() -> Any:
    """``torch.distributed.tensor.DTensor``, or ``None`` in a PyTorch built without torch.distributed."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - every CPU and CUDA wheel has it
        return None
    return DTensor


_DTensor: Any = _dtensor_class()


def _local_shards(tensors: list[Any]) -> list[Any]:
    """Each DTensor (FSDP2's sharded parameters, gradients and buffers) as this rank's local shard.

    The shard is a view of the DTensor's storage, so stepping it in place steps
    the DTensor: the kernels (fused or not) see plain tensors and compute, element
    by element, what they compute for an unsharded parameter.
    """
    if _DTensor is None:
        return tensors
    return [t.to_local() if isinstance(t, _DTensor) else t for t in tensors]


def _meshes(tensors: list[Any]) -> list[Any]:
    """The device meshes of the DTensors among ``tensors``, each once, in first-seen order."""
    if _DTensor is None:
        return []
    found: list[Any] = []
    for t in tensors:
        if isinstance(t, _DTensor) and not any(t.device_mesh is mesh for mesh in found):
            found.append(t.device_mesh)
    return found


def _agreed_flags(nonfinite: list[bool], meshes: list[Any], device: Any) -> list[bool]:
    """Per gradient, whether its shard on ANY rank of the meshes holds a non-finite value.

    One ``all_reduce`` (``MAX``) of one number per gradient over each mesh
    dimension's process group: every rank gets the same flags, so a NaN in one
    rank's shard skips the step on every rank (a collective: every rank of
    the meshes steps together, as FSDP2 requires anyway).
    """
    import torch.distributed as dist

    flags = torch.tensor([1.0 if bad else 0.0 for bad in nonfinite], dtype=torch.float32, device=device)
    for mesh in meshes:
        for dim in range(mesh.ndim):
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
    return [bool(f > 0) for f in flags.tolist()]


def _by_device_and_dtype(ps: list[Any], gs: list[Any], vs: list[Any]) -> Iterator[tuple[list[Any], ...]]:
    """The triples in lists of one device and dtype (PyTorch's own grouping, in C++), DTensors apart."""
    if _DTensor is not None and any(issubclass(kind, _DTensor) for kind in set(map(type, ps))):
        sharded = [isinstance(p, _DTensor) for p in ps]
        for keep in (True, False):
            picked = [
                t for t, flag in zip(zip(ps, gs, vs, strict=True), sharded, strict=True) if flag is keep
            ]
            if picked:
                # DTensors: one list per dtype (their devices are their meshes')
                by_dtype: dict[torch.dtype, tuple[list[Any], list[Any], list[Any]]] = {}
                for p, g, v in picked:
                    lists = by_dtype.setdefault(p.dtype, ([], [], []))
                    lists[0].append(p)
                    lists[1].append(g)
                    lists[2].append(v)
                if keep:
                    yield from by_dtype.values()
                else:
                    for lists in by_dtype.values():
                        yield from _by_device_and_dtype(*lists)
        return
    dtype = ps[0].dtype
    if list(map(_dtype_of, ps)).count(dtype) == len(ps) and all(map(_is_cpu, ps)):
        # the common case, asked at C level: one list (PyTorch holds each gradient to its
        # parameter's device and dtype, and a buffer is made or loaded as its parameter)
        yield ps, gs, vs
        return
    grouped = _group_tensors_by_device_and_dtype([ps, gs, vs])
    for columns, _ in grouped.values():
        yield tuple(columns)


def _all_finite(grads: list[Any]) -> bool:
    """Whether every element of every gradient is finite: one pass of
    ``torch._amp_foreach_non_finite_check_and_unscale_`` per device and dtype (with the
    factor 1, so it writes every element back unchanged), read once per device.

    Where that kernel does not apply (a gradient that is not real floating point, a device
    other than the CPU or CUDA), :func:`corrmom_ref._finite.finite_flags` answers.
    """
    if not grads:
        return True
    groups = _group_tensors_by_device_and_dtype([grads])
    if any(device.type not in ("cpu", "cuda") or dtype not in _AMP_CHECKED for device, dtype in groups):
        return all(finite_flags(grads))
    found: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
    for (device, _), ((group,), _) in groups.items():
        flags = found.get(device)
        if flags is None:
            flags = found[device] = (torch.zeros((), device=device), torch.ones((), device=device))
        torch._amp_foreach_non_finite_check_and_unscale_(cast("list[torch.Tensor]", group), *flags)
    return not any(bool(flag) for flag, _ in found.values())


#: Gradient dtypes the AMP check takes.
_AMP_CHECKED = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})

#: Files whose frames a warning skips to reach the user's line: this package and PyTorch.
_INTERNAL_DIRS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
)


def _user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller that points at the user's line.

    Counts the frames of ``corrmom_ref`` and ``torch`` (``step``, ``LossScaler.step``,
    PyTorch's step wrappers and ``no_grad``) between the caller and the first other frame,
    however many wrappers a PyTorch version adds.
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame = frame.f_back
        level += 1
    return level


def _fused_takes(p: torch.Tensor, fp32_master: bool) -> bool:
    """Whether the fused kernel takes ``p`` (see :func:`_check_fused_takes`)."""
    dtype = torch.float32 if fp32_master and p.dtype == torch.float16 else p.dtype
    return dtype in _steps.FUSED_DTYPES and p.device.type in _fused_devices()


def _check_fused_takes(p: torch.Tensor, name: str, owner: str, fp32_master: bool) -> None:
    """``RuntimeError`` naming ``p`` if ``fused=True`` cannot step it: the kernel takes float32 and
    float64 tensors (a float16 one through its float32 master) on PyTorch's fused devices."""
    if not _fused_takes(p, fp32_master):
        devices = _fused_devices()
        kind = p.device.type
        raise RuntimeError(
            f"{owner}: fused=True takes float32 and float64 parameters (float16 with fp32_master=True) "
            f"on the devices {sorted(devices)}; parameter {name} is {p.dtype} on {kind} "
            f"(leave fused unset to step it without the fused kernel)"
        )


def _refuse_options(group: Mapping[str, Any], where: str, owner: str) -> None:
    """``ValueError`` naming the first key of ``group`` that asks for an update this optimizer does not do."""
    for key, (_, instead) in _SGD_OPTIONS.items():
        if key in group:
            raise ValueError(f"{where}: {owner} has no option {key!r} (got {group[key]!r}); {instead}")
    foreign = sorted(_OTHER_OPTIONS.intersection(group))
    if foreign:
        raise ValueError(
            f"{where}: {owner} has no option {foreign[0]!r} (got {group[foreign[0]]!r}), an option of "
            f"another torch.optim optimizer"
        )
    if group.get("differentiable", False):
        raise ValueError(
            f"{where}: {owner} has no option differentiable=True; its step runs under torch.no_grad()"
        )


class _ChainerMomentum(torch.optim.Optimizer):
    """The machinery shared by :class:`CorrectedMomentumSGD` and :class:`MomentumSGD`."""

    #: Which update: eq. (9) or eq. (10).
    _form: Form = Form.CORRECTED
    #: Under torch.compile, where the kernels' arguments go instead of the kernels (else ``None``;
    #: a class default, so that an optimizer unpickled from an older version has it).
    _collect: list[tuple[list[Any], list[Any], list[Any], float, float]] | None = None
    #: Whether ``fused=True`` was asked for (then parameters the kernel cannot take are refused).
    _fused_asked: bool = False
    foreach: bool | None = None

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        momentum: float = 0.9,
        *,
        fused: bool | None = None,
        foreach: bool | None = None,
        fp32_master: bool = False,
    ) -> None:
        owner = type(self).__name__
        lr = _hyperparameter(lr, "lr", owner)
        momentum = _hyperparameter(momentum, "momentum", owner)
        if fused and foreach:
            raise RuntimeError(f"{owner}: fused=True and foreach=True cannot both be asked for")
        if fused and not hasattr(torch, "_fused_sgd_"):
            raise RuntimeError("fused=True, but this PyTorch has no torch._fused_sgd_ kernel")
        #: float16 parameters are updated through a float32 master copy (Chainer's ``use_fp32_update``).
        self.fp32_master: bool = bool(fp32_master)
        self._fused_asked = bool(fused) and self._form is Form.CORRECTED  # refuse what the kernel cannot take
        super().__init__(params, {"lr": lr, "momentum": momentum})
        #: Whether steps run the fused kernel where it applies (see the module docstring):
        #: by default wherever it takes the parameters; with ``fused=True`` everywhere
        #: (parameters it cannot take are refused).
        self.fused: bool = hasattr(torch, "_fused_sgd_") if fused is None else bool(fused)
        #: The step taken where the fused kernel is not (``True`` the multi-tensor step,
        #: ``False`` the single-tensor step, ``None`` PyTorch's default, multi-tensor off the CPU).
        self.foreach: bool | None = None if foreach is None else bool(foreach)
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

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """PyTorch's ``add_param_group``, refusing what this optimizer cannot do, before the group is added.

        Raises:
            ValueError: a key of ``torch.optim.SGD`` that changes the update
                (``weight_decay``: use the hook :class:`~corrmom_ref.torch.WeightDecay`;
                ``dampening``, ``nesterov``, ``maximize``, ``differentiable=True``),
                or a negative or non-finite ``lr``/``momentum``.
            TypeError: an integer or boolean parameter (named), or a
                hyperparameter that is not a real number.
        """
        owner = type(self).__name__
        where = f"{owner} param group {len(self.param_groups)}"
        _refuse_options(param_group, where, owner)
        for key in ("lr", "momentum"):
            if key in param_group:
                _hyperparameter(param_group[key], key, where)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        names = group.get("param_names")
        for i, p in enumerate(group["params"]):
            name = names[i] if names is not None else f"{i} of param group {len(self.param_groups) - 1}"
            try:
                check_parameter_dtype(
                    types.SimpleNamespace(array=p),  # type: ignore[arg-type]
                    name,
                    owner,
                    keep_fixed="leave it out of the optimizer's parameters",
                )
                if self._fused_asked:
                    _check_fused_takes(p, name, owner, self.fp32_master)
            except (TypeError, RuntimeError):
                self.param_groups.pop()  # the group was not added
                raise

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
                    # Chainer calls it on disabled rules too; a frozen parameter without a gradient has nothing
                    if p.requires_grad or p.grad is not None:
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
        """Give every trainable parameter without a gradient a zero one; with ``check_dense``, first
        raise ``TypeError`` (changing nothing) if a gradient is sparse.

        A frozen parameter (``requires_grad=False``) gets none: it has no update rule to feed.
        """
        params = list(self._params())
        grads = list(map(_grad_of, params))  # asked of the whole list at C level: this runs every step
        if check_dense and any(map(_is_sparse, [g for g in grads if g is not None])):
            p = next(p for p, g in zip(params, grads, strict=True) if g is not None and g.is_sparse)
            name = next(n for n, q in self._named() if q is p)
            raise TypeError(f"{name} has a sparse gradient; Chainer's momentum SGD takes dense ones")
        if any(map(_is_none, grads)):  # not `None in grads`: that compares tensors with ==
            for p, g in zip(params, grads, strict=True):
                if g is None and p.requires_grad:
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
                finite number >= 0 (the reference's rule and message), a group
                holds an option this optimizer does not do (as :meth:`add_param_group`),
                ``loss_scale`` is outside the reference's range, or a gradient is
                sparse: raised before anything changes.
        """
        if torch.compiler.is_compiling():
            return self._traced_step(closure, loss_scale, check_finite)
        loss, work = self._begin(closure, loss_scale, check_finite)
        try:
            for group, lr, m in work or ():
                self._update_group(group, lr, m, self._step_loss_scale)
            self._end(skipped=work is None)
        finally:
            self._step_loss_scale = None
        return loss

    def _begin(
        self, closure: Callable[[], Any] | None, loss_scale: float | None, check_finite: bool
    ) -> tuple[Any, list[tuple[dict[str, Any], float, float]] | None]:
        """Chainer's ``update()`` up to the updates: checks, reallocation, the non-finite check,
        pre hooks, ``t += 1``. Returns the loss and each group to update with its ``lr`` and
        ``momentum`` (``None`` when the step is skipped); leaves :attr:`loss_scale` set."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hypers = self._hyperparameters()
        scale = None if loss_scale is None else check_loss_scale(loss_scale, "loss_scale")
        master = self.fp32_master
        if self._fused_asked and not all(_fused_takes(p, master) for p in self._params()):
            owner = type(self).__name__  # a parameter made float16 (model.half()) since it was added
            for name, p in self._named():
                _check_fused_takes(p, name, owner, master)
        self._reallocate(check_dense=True)
        skipped = check_finite and self._warn_on_nonfinite(scale)
        self._step_loss_scale = scale
        try:
            if self._chainer_hooks.names("pre"):
                self._call_hooks("pre")
                hypers = self._hyperparameters()  # a hook may have changed them: Chainer reads them now
        except BaseException:
            self._step_loss_scale = None
            raise
        self.t += 1
        if skipped:
            return loss, None
        return loss, [(group, lr, m) for group, (lr, m) in zip(self.param_groups, hypers, strict=True)]

    def _end(self, skipped: bool) -> None:
        """Chainer's ``update()`` after the updates: reallocation, post hooks."""
        if self._param_hooks:  # only a hook can have cleared a gradient since the first pass
            self._reallocate()
        self._call_hooks("post")
        self.last_step_skipped = skipped

    def _traced_step(
        self, closure: Callable[[], Any] | None, loss_scale: float | None, check_finite: bool
    ) -> Any:
        """The step under ``torch.compile``: the bookkeeping runs eagerly (``_eager_begin``,
        ``_eager_end``), the arithmetic of the multi-tensor step is traced."""
        loss, batches = self._eager_begin(closure, loss_scale, check_finite)
        for ps, gs, vs, lr, m in batches or ():
            _steps.multi_tensor_step(self._form, ps, gs, vs, lr, m, None)
        self._eager_end(skipped=batches is None)
        return loss

    @torch.compiler.disable
    def _eager_begin(
        self, closure: Callable[[], Any] | None, loss_scale: float | None, check_finite: bool
    ) -> tuple[Any, list[tuple[list[Any], list[Any], list[Any], float, float]] | None]:
        """:meth:`_begin` and the per-parameter preamble, returning the kernels' arguments
        instead of running them (``None``: the step is skipped). With parameter hooks or
        ``fp32_master`` the updates run here, eagerly (their order interleaves with them)."""
        loss, work = self._begin(closure, loss_scale, check_finite)
        if work is None:
            return loss, None
        collected: list[tuple[list[Any], list[Any], list[Any], float, float]] = []
        self._collect = None if (self._param_hooks or self.fp32_master) else collected
        try:
            for group, lr, m in work:
                self._update_group(group, lr, m, self._step_loss_scale)
        except BaseException:
            self._step_loss_scale = None
            raise
        finally:
            self._collect = None
        return loss, collected

    @torch.compiler.disable
    def _eager_end(self, skipped: bool) -> None:
        try:
            self._end(skipped)
        finally:
            self._step_loss_scale = None

    def _hyperparameters(self) -> list[tuple[float, float]]:
        """Every group's ``(lr, momentum)``, checked by the reference's rule (errors name the group)."""
        owner = type(self).__name__
        out = []
        for i, g in enumerate(self.param_groups):
            where = f"{owner} param group {i}"
            lr, m = g["lr"], g["momentum"]
            if not (type(lr) is float and type(m) is float and 0.0 <= lr < _INF and 0.0 <= m < _INF):
                lr, m = _hyperparameter(lr, "lr", where), _hyperparameter(m, "momentum", where)
            if not _OPTION_KEYS.isdisjoint(g):
                _refuse_options(g, where, owner)
            out.append((lr, m))
        return out

    def _warn_on_nonfinite(self, scale: float | None) -> bool:
        """Whether any gradient is non-finite, warning :class:`~corrmom_ref.loss_scaling.NonFiniteGradientWarning`
        per such parameter (frozen ones with a gradient too, as Chainer checks every parameter)."""
        params = [p for p in self._params() if p.grad is not None]
        grads = [p.grad for p in params]
        meshes = _meshes(grads)
        if not meshes and _all_finite(grads):
            return False
        local = _local_shards(grads)
        flags = finite_flags(local)
        if meshes:  # sharded gradients: a shard's verdict is agreed by every rank
            nonfinite = _agreed_flags([not f for f in flags], meshes, local[0].device)
            flags = [not bad for bad in nonfinite]
        name_of = {id(p): name for name, p in self._named()}
        bad = [name_of[id(p)] for p, finite in zip(params, flags, strict=True) if not finite]
        if bad:
            level = _user_stacklevel()
            for name in bad:
                warnings.warn(NonFiniteGradientWarning(name, self.t, scale), stacklevel=level)
        return bool(bad)

    def _update_group(self, group: dict[str, Any], lr: float, m: float, scale: float | None) -> None:
        """Update every parameter of ``group``: batched, or one by one when any has parameter hooks."""
        one_by_one = bool(self._param_hooks) and any(p in self._param_hooks for p in group["params"])
        # the common triples (state exists, no master, no hooks: the step divides by the scale)
        # and those whose preamble divided already (a first step, a float32 master)
        common: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        prepared: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        masters: list[tuple[torch.Tensor, torch.Tensor]] = []
        state_of = self.state
        half_master = self.fp32_master
        add_p, add_g, add_v = (column.append for column in common)
        for p in group["params"]:
            if not p.requires_grad:  # frozen: Chainer's disabled rule (no step, no state, no t)
                continue
            state = state_of[p]
            v = None if one_by_one else state.get("v")
            if v is not None and not (half_master and p.dtype == torch.float16):
                state["t"] += 1
                add_p(p)  # stepped in place under no_grad
                add_g(p.grad)
                add_v(v)
                continue
            target, grad, v = self._prepare(p, scale)
            if target is not p:
                masters.append((p, target))
            if one_by_one:
                self._update_hooked(p, target, grad, v, lr, m)
                continue
            prepared[0].append(target)
            prepared[1].append(grad)
            prepared[2].append(v)
        for lists, pending in ((common, scale), (prepared, None)):
            if lists[0]:
                for ps, gs, vs in _by_device_and_dtype(*lists):
                    self._step_group(ps, gs, vs, lr, m, pending)
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
                self._step_group([target], [holder.grad], [v], lr, m)
            if hooks is not None:
                for hook in hooks.of("post"):
                    hook(self, holder)
        finally:
            if holder is not p:
                holder.grad = None
                self._step_loss_scale = scale

    def _step_group(
        self, ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float, scale: float | None = None
    ) -> None:
        """Step lists of one tensor type, device and dtype, dividing the gradients by ``scale`` first."""
        if self._collect is not None:  # under torch.compile: the traced step runs it, unscaled here
            if scale is not None:
                torch._foreach_div_(gs, scale)
            self._collect.append((ps, gs, vs, lr, m))
            return
        if _DTensor is not None and isinstance(ps[0], _DTensor):
            ps, gs, vs = _local_shards(ps), _local_shards(gs), _local_shards(vs)
        first = ps[0]
        fusable = self.fused and first.dtype in _steps.FUSED_DTYPES and first.device.type in _fused_devices()
        step = _steps.choose(self._form, fusable, self.foreach, first.dtype, first.is_cpu, m)
        if step is _steps.fused_step and not all(map(_is_contiguous, [*ps, *gs, *vs])):
            # the kernel walks the three tensors' memory alike: a triple with another layout
            # takes the single-tensor step (within the fused step's roundings)
            linear = [all(map(_is_contiguous, triple)) for triple in zip(ps, gs, vs, strict=True)]
            for take, stepper in ((True, _steps.fused_step), (False, _steps.single_tensor_step)):
                chosen = [
                    triple
                    for triple, ok in zip(zip(ps, gs, vs, strict=True), linear, strict=True)
                    if ok is take
                ]
                if chosen:
                    cps, cgs, cvs = (list(column) for column in zip(*chosen, strict=True))
                    stepper(self._form, cps, cgs, cvs, lr, m, scale)
            return
        step(self._form, ps, gs, vs, lr, m, scale)

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's state dict (per parameter ``v``, ``t`` and any ``master``) plus ``chainer``: ``t``, ``epoch``."""
        out = super().state_dict()
        out["chainer"] = {"t": self.t, "epoch": self.epoch}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned, or migrate a ``torch.optim.SGD`` state dict exactly.

        Ours: the buffers are copied (loading another live optimizer's state
        dict leaves the two independent; PyTorch's base class would share
        them); float32 masters stay float32, and so do the buffers of float16
        parameters under ``fp32_master``.

        ``torch.optim.SGD``'s (or any dict with its per-parameter
        ``momentum_buffer``): only plain SGD migrates, that is every group with
        ``dampening=0``, ``nesterov=False``, ``weight_decay=0``,
        ``maximize=False``. Its buffer :math:`b` (:math:`b \\leftarrow m b + g,\\ p
        \\leftarrow p - \\eta b`) becomes :math:`v = -b`, exact in floating point,
        and since negation commutes with every rounding, the steps that follow are
        SGD's to the bit (with ``fused=True`` against SGD's ``fused=True``; the
        generic step rounds ``lr * v`` before adding it, where SGD's CPU kernels may
        contract it). SGD's ``momentum`` is this optimizer's (same :math:`m`) and
        its ``lr`` too (a constant one gives the same steps; SGD's buffer holds no
        ``lr``, as Chainer's corrected form). SGD keeps no step count, so ``t``, each
        parameter's ``t`` and ``epoch`` start at 0 (nothing in the update reads them).
        SGD's other group keys (``foreach``, ``fused``, ``differentiable=False``)
        are dropped.

        Raises:
            ValueError: a group with another SGD setting (named, with its value),
                a per-parameter state key that is neither ours nor ``momentum_buffer``
                (named, with the parameter), a buffer whose shape is not its
                parameter's, groups that do not match this optimizer's, or
                counters or hyperparameters the reference refuses; nothing is
                loaded then.
            TypeError: as for ValueError, a value of the wrong type.
        """
        owner = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{owner}.load_state_dict: {len(saved_groups)} param groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        index_to_param: dict[Any, torch.Tensor] = {}
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{owner}.load_state_dict: param group {gi} has {len(saved['params'])} "
                    f"parameters, this optimizer's {len(group['params'])}"
                )
            index_to_param.update(zip(saved["params"], group["params"], strict=True))
        saved_state: Mapping[Any, Mapping[str, Any]] = state_dict["state"]
        foreign = any("momentum_buffer" in s for s in saved_state.values()) or any(
            not _OPTION_KEYS.isdisjoint(g) for g in saved_groups
        )
        if (
            foreign
            and self._form is Form.UNCORRECTED
            and any(s.get("momentum_buffer") is not None for s in saved_state.values())
        ):
            raise ValueError(
                f"{owner}.load_state_dict: torch.optim.SGD's momentum_buffer b holds no learning rate, "
                f"{owner}'s v does (v = -lr * b only if lr never changed); load it into "
                f"CorrectedMomentumSGD, whose v is -b exactly"
            )
        groups = [self._loaded_group(g, gi, foreign) for gi, g in enumerate(saved_groups)]
        state = {}
        for k, entry in saved_state.items():
            p = index_to_param.get(k)
            if p is None:
                raise ValueError(f"{owner}.load_state_dict: state for parameter {k!r}, which no group holds")
            state[k] = self._loaded_state(entry, k, p, foreign)
        counters = state_dict.get("chainer", {"t": 0, "epoch": 0})
        if foreign and "chainer" in state_dict:
            raise ValueError(
                f"{owner}.load_state_dict: a torch.optim.SGD state dict with our 'chainer' counters"
            )
        t = check_counter(counters["t"], "chainer.t")
        epoch = check_counter(counters["epoch"], "chainer.epoch")
        masters = {k: s.pop("master") for k, s in state.items() if "master" in s}
        # PyTorch casts every state tensor to its parameter's dtype; a float16 parameter
        # updated through a float32 master keeps its buffer in float32, as the step made it
        on_master = {
            k: s["v"]
            for k, s in state.items()
            if "v" in s and self.fp32_master and index_to_param[k].dtype == torch.float16
        }
        super().load_state_dict({"state": state, "param_groups": groups})
        for k, master in masters.items():
            p = index_to_param[k]
            self.state[p]["master"] = master.to(device=p.device, dtype=torch.float32).clone()
        for k, v in on_master.items():
            p = index_to_param[k]
            self.state[p]["v"] = v.to(device=p.device, dtype=torch.float32)
        self.t, self.epoch = t, epoch

    def _loaded_group(self, saved: Mapping[str, Any], gi: int, foreign: bool) -> dict[str, Any]:
        """A saved param group checked (and, from SGD, stripped of SGD's settings at their neutral values)."""
        owner = type(self).__name__
        where = f"{owner}.load_state_dict param group {gi}"
        group = dict(saved)
        if foreign:
            for key, (neutral, _) in _SGD_OPTIONS.items():
                if key in group and group[key] == neutral and type(group[key]) is type(neutral):
                    del group[key]
            if group.get("differentiable", False) is False:
                group.pop("differentiable", None)
            group.pop("foreach", None)
            group.pop("fused", None)
        _refuse_options(group, where, owner)
        for key in ("lr", "momentum"):
            if key not in group:
                raise ValueError(f"{where}: no {key!r}")
            _hyperparameter(group[key], key, where)
        return group

    def _loaded_state(
        self, entry: Mapping[str, Any], k: Any, p: torch.Tensor, foreign: bool
    ) -> dict[str, Any]:
        """One parameter's saved state checked and copied (an SGD buffer ``b`` becomes ``v = -b``)."""
        where = f"{type(self).__name__}.load_state_dict: state of parameter {k!r}"
        allowed = {"momentum_buffer"} if foreign else _STATE_KEYS
        unknown = sorted(str(key) for key in entry if key not in allowed)
        if unknown:
            raise ValueError(
                f"{where}: unknown key {unknown[0]!r} (this optimizer keeps 't', 'v', 'master'; "
                f"torch.optim.SGD 'momentum_buffer')"
            )
        out: dict[str, Any] = {}
        if foreign:
            b = entry.get("momentum_buffer")
            if b is None:  # SGD without momentum, or not stepped yet: the buffer starts at zero here
                return out
            buffer = b
        else:
            if "t" in entry:
                out["t"] = check_counter(entry["t"], f"{where}: t")
            buffer = entry.get("v")
            if "master" in entry:
                out["master"] = entry["master"]
        if buffer is not None:
            if not isinstance(buffer, torch.Tensor) or not buffer.is_floating_point():
                raise TypeError(f"{where}: the buffer must be a floating-point tensor, got {buffer!r}")
            if tuple(buffer.shape) != tuple(p.shape):
                raise ValueError(
                    f"{where}: the buffer has shape {tuple(buffer.shape)}, the parameter {tuple(p.shape)}"
                )
            out["v"] = torch.neg(buffer) if foreign else buffer.clone()
            out.setdefault("t", 0)
        return out


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
        fused: ``None`` (default): the fused kernel (``torch._fused_sgd_``)
            wherever it takes the parameters (see the module docstring);
            ``True``: the same, refusing parameters it cannot take;
            ``False``: Chainer's in-place operations, bitwise equal to
            Chainer on the CPU.
        foreach: Without the fused kernel: ``True`` one ``torch._foreach_*``
            call per operation for a list of float32 or float64 tensors,
            ``False`` tensor by tensor, ``None`` (default) the first off the
            CPU and the second on it, as ``torch.optim.SGD``. The same bits
            either way.
        fp32_master: Update float16 parameters through a float32 copy.

    Raises:
        RuntimeError: ``fused=True`` with ``foreach=True``, or ``fused=True``
            and a parameter that is not float32 or float64 (float16 under
            ``fp32_master``) on one of PyTorch's fused devices
            (``CorrectedMomentumSGD: fused=True takes float32 and float64 parameters
            (float16 with fp32_master=True) on the devices [...]; parameter w is
            torch.float16 on cpu (leave fused unset to step it without the fused kernel)``),
            here, in :meth:`add_param_group` or at a step, before anything changes.
    """

    _form = Form.CORRECTED


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
        foreach: As for :class:`CorrectedMomentumSGD`.
        fp32_master: Update float16 parameters through a float32 copy.
    """

    _form = Form.UNCORRECTED
