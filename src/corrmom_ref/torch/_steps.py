r"""The three ways :mod:`corrmom_ref.torch` steps a list of tensors, and the one chooser.

Every step updates lists ``ps, gs, vs`` of one device and dtype in place,
first dividing each gradient by ``scale`` where one is given (dynamic loss
scaling; Chainer divides the gradient in place, so it holds the true
gradient afterwards), then

* corrected (eq. 9): :math:`v \leftarrow m v - g;\ p \leftarrow p + \eta v`,
  as ``v *= m; v -= g; p += lr * v``;
* uncorrected (eq. 10): :math:`v \leftarrow m v - \eta g;\ p \leftarrow p + v`,
  as ``v *= m; v -= lr * g; p += v``.

The three steps, as ``torch.optim.SGD`` has them:

* :func:`single_tensor_step`: Chainer's in-place operations, tensor by
  tensor; each operation rounds once, so the numbers are Chainer's NumPy
  numbers bit for bit (``p += lr * v`` keeps its two roundings: PyTorch's
  ``add_(v, alpha=lr)`` may fuse them on the CPU, so it is not used);
* :func:`multi_tensor_step`: the same operations as ``torch._foreach_*``
  calls over the whole list; in eager mode each rounds as its single-tensor
  twin for float32 and float64 (``tests/torch_port/test_optimizers.py``), so the
  numbers are those of :func:`single_tensor_step`;
* :func:`fused_step`: one ``torch._fused_sgd_`` call (corrected form only),
  the reference's own fused call
  (:func:`corrmom_ref._step.kernels.torch.fused_corrected_sgd`: with the
  dampening :math:`d = 2` and the learning rate negated, PyTorch's kernel is
  eq. (9) on Chainer's sign of the buffer, reading ``p, g, v`` and writing
  ``p, v`` once). It contracts each product into a multiply-add: within one rounding
  per product of the other two (:data:`FUSED_ROUNDINGS`). On the CPU it also
  divides the gradient by ``grad_scale`` and writes the quotient back, a
  true division (not a multiplication by the reciprocal), so the unscaled
  gradient is Chainer's to the bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from corrmom_ref._step.kernels.torch import fused_corrected_sgd
from corrmom_ref._step.reference import Form

__all__ = [
    "FUSED_DTYPES",
    "FUSED_ROUNDINGS",
    "Step",
    "choose",
    "fused_devices",
    "fused_step",
    "multi_tensor_step",
    "single_tensor_step",
]

#: Roundings per product by which :func:`fused_step` may differ from the other two steps.
FUSED_ROUNDINGS = 1
#: Dtypes the fused step takes: the kernel computes float16 and bfloat16 in float32, one
#: rounding where Chainer's float16 operations round each.
FUSED_DTYPES = (torch.float32, torch.float64)
#: Dtypes whose ``torch._foreach_*`` operations round as the single-tensor ones (PyTorch's
#: multi-tensor float16 and bfloat16 arithmetic may not).
_FOREACH_DTYPES = (torch.float32, torch.float64)
#: Elements per block of the single-tensor step on the CPU: the temporary ``lr * v`` (1 MiB
#: in float32) stays in the cache and bounds the step's extra memory.
CPU_BLOCK_ELEMENTS = 1 << 18

Step = Callable[[Form, list[Any], list[Any], list[Any], float, float, "float | None"], None]


def fused_devices() -> list[str]:
    """The device types PyTorch has fused optimizer kernels for (``cpu``, ``cuda``, ...)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return list(_get_fused_kernels_supported_devices())


def single_tensor_step(
    form: Form, ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float, scale: float | None
) -> None:
    """Chainer's in-place operations, one tensor at a time (a large CPU tensor in blocks)."""
    for p, g, v in zip(ps, gs, vs, strict=True):
        if scale is not None:
            g.div_(scale)
        if p.is_cpu and p.numel() > CPU_BLOCK_ELEMENTS and _flat_views_exist(p, g, v):
            fp, fg, fv = p.view(-1), g.view(-1), v.view(-1)
            for start in range(0, fp.numel(), CPU_BLOCK_ELEMENTS):
                block = slice(start, start + CPU_BLOCK_ELEMENTS)
                _one(form, fp[block], fg[block], fv[block], lr, m)
        else:
            _one(form, p, g, v, lr, m)


def _flat_views_exist(p: Any, g: Any, v: Any) -> bool:
    return bool(p.is_contiguous() and g.is_contiguous() and v.is_contiguous())


def _one(form: Form, p: Any, g: Any, v: Any, lr: float, m: float) -> None:
    v.mul_(m)
    if form is Form.CORRECTED:  # v *= m; v -= g; p += lr * v
        v.sub_(g)
        p.add_(torch.mul(v, lr))
    else:  # v *= m; v -= lr * g; p += v
        v.sub_(torch.mul(g, lr))
        p.add_(v)


def multi_tensor_step(
    form: Form, ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float, scale: float | None
) -> None:
    """The operations of :func:`single_tensor_step` as ``torch._foreach_*`` calls (what ``torch.compile`` traces)."""
    if scale is not None:
        torch._foreach_div_(gs, scale)
    torch._foreach_mul_(vs, m)
    if form is Form.CORRECTED:
        torch._foreach_sub_(vs, gs)
        torch._foreach_add_(ps, torch._foreach_mul(vs, lr))
    else:
        torch._foreach_sub_(vs, torch._foreach_mul(gs, lr))
        torch._foreach_add_(ps, vs)


def fused_step(
    form: Form, ps: list[Any], gs: list[Any], vs: list[Any], lr: float, m: float, scale: float | None
) -> None:
    """One ``torch._fused_sgd_`` call (eq. 9 only; ``m != 0``, contiguous tensors of :data:`FUSED_DTYPES`).

    The kernel divides by ``grad_scale`` itself where that is Chainer's
    division: on the CPU (it writes the quotient back to the gradient), for
    float32 gradients (their quotient is by the scale rounded to float32,
    as the kernel's) or a scale that float32 holds exactly. Elsewhere the
    gradients are divided first, by ``torch._foreach_div_``.
    """
    assert form is Form.CORRECTED
    grad_scale = None
    if scale is not None:
        first = ps[0]
        if first.is_cpu and (first.dtype == torch.float32 or float(torch.tensor(scale)) == scale):
            grad_scale = torch.tensor(scale, dtype=torch.float32)
        else:
            torch._foreach_div_(gs, scale)
    fused_corrected_sgd(ps, gs, vs, lr, m, grad_scale)


def choose(form: Form, fused: bool, foreach: bool | None, dtype: torch.dtype, cpu: bool, m: float) -> Step:
    """The step for one (device, dtype) list. The order, first that applies:

    1. ``fused`` (the optimizer checked at construction that the kernel takes
       its parameters): the fused kernel, unless the update is eq. (10) or
       ``m == 0`` (the kernel keeps no buffer then, where Chainer's is
       :math:`-g`), which no kernel does;
    2. ``foreach=True``, or ``foreach=None`` off the CPU (PyTorch's default:
       one launch per operation for the list rather than per tensor), for
       float32 and float64: the multi-tensor step;
    3. the single-tensor step (the CPU's default, as PyTorch's: no gain from
       grouping there, and the temporary ``lr * v`` of one block rather than
       of every tensor).
    """
    if fused and form is Form.CORRECTED and m != 0:
        return fused_step
    if dtype in _FOREACH_DTYPES and (foreach or (foreach is None and not cpu)):
        return multi_tensor_step
    return single_tensor_step
