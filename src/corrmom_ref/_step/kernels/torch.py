r"""PyTorch: the corrected-momentum step as one pass of PyTorch's fused SGD kernel.

``torch._fused_sgd_`` keeps :math:`b \leftarrow m b + (1 - d) g;\ p \leftarrow p - \eta b`.
With the dampening :math:`d = 2` (so :math:`(1 - d) g = -g`, exact) and the
learning rate negated it is exactly our step on Chainer's sign of the state:

.. math:: v \leftarrow m v - g, \qquad p \leftarrow p + \eta v

reading ``p, g, v`` and writing ``p, v`` once (:func:`fused_corrected_sgd`,
which :mod:`corrmom_ref.torch` calls too). ``maximize=True`` with no dampening
gives the same bits, NaNs included, but takes a slower path on the CPU
(``benchmarks/RESULTS.md``, "issue 22: torch rows"). The kernel contracts each
product into a fused multiply-add, so it agrees with the reference step to
within one rounding per product (``ROUNDINGS = 1``), not bitwise.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import torch

from corrmom_ref._step.admission import alike_and_separate, all_distinct

__all__ = ["ROUNDINGS", "accepts", "available", "fused_corrected_sgd", "run"]

#: Roundings per product by which the kernel may differ from the reference step.
ROUNDINGS = 1

_DTYPES = (torch.float32, torch.float64)
_is_cpu = attrgetter("is_cpu")
_is_contiguous = torch.Tensor.is_contiguous  # unbound: a third of methodcaller's cost per tensor


def available() -> bool:
    """Whether this PyTorch has the fused SGD kernel."""
    return hasattr(torch, "_fused_sgd_")


def accepts(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> bool:
    """Whether one kernel call steps the lists as the reference does (within one rounding).

    The shared check plus: float32 or float64, one device (the kernel takes
    one per call), contiguous tensors (it walks memory linearly), and
    ``m != 0`` (it skips the momentum buffer then). The common case is
    answered by :func:`_plain_cpu_triples` and the identity test; any list
    it does not take is asked the whole check, so the answer is the same.
    """
    if m == 0 or ps[0].dtype not in _DTYPES:
        return False
    if _plain_cpu_triples(ps, gs, vs):
        return all_distinct([*ps, *gs, *vs])  # what is left of the shared check
    return _checked_fully(ps, gs, vs)


def _plain_cpu_triples(ps: list[Any], gs: list[Any], vs: list[Any]) -> bool:
    """Whether the lists are of one length and every tensor is of ``ps[0]``'s type and dtype, on the CPU,
    contiguous and not a view, with one shape per triple.

    What the shared check and :func:`accepts` ask, identities aside, in one
    pass over the triples that reads each tensor once, while it is in the
    cache (per attribute over all tensors costs more on many small ones:
    ``benchmarks/RESULTS.md``, "issue 22: the reference's small workload, third pass").
    ``True`` is always right; ``False`` may be wrong (another device, a view, ...).
    """
    if not len(ps) == len(gs) == len(vs):
        return False
    first = ps[0]
    kind, dtype, contiguous = type(first), first.dtype, _is_contiguous
    for p, g, v in zip(ps, gs, vs, strict=True):  # lengths compared above
        if not (
            type(p) is kind
            and type(g) is kind
            and type(v) is kind
            and p.dtype is dtype  # dtypes are singletons
            and g.dtype is dtype
            and v.dtype is dtype
            and p.is_cpu
            and g.is_cpu
            and v.is_cpu
            and p.shape == g.shape == v.shape
            and contiguous(p)
            and contiguous(g)
            and contiguous(v)
            and p._base is None  # owns its memory: not a view
            and g._base is None
            and v._base is None
        ):
            return False
    return True


def _checked_fully(ps: list[Any], gs: list[Any], vs: list[Any]) -> bool:
    """The shared check (:func:`~corrmom_ref._step.admission.alike_and_separate`), contiguity and one device."""
    if not alike_and_separate(ps, gs, vs):
        return False
    arrays = [*ps, *gs, *vs]
    if list(map(_is_contiguous, arrays)).count(True) != len(arrays):
        return False
    cpu = list(map(_is_cpu, arrays)).count(True)  # a device is a new object on each read; is_cpu is not
    if cpu == len(arrays):
        return True
    return cpu == 0 and all(t.device == ps[0].device for t in arrays)


def run(ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any) -> tuple[list[Any], list[Any]]:
    """Update every ``p`` and ``v`` in place with one kernel call (inputs :func:`accepts` took)."""
    with torch.no_grad():  # one context per call is cheaper than asking each tensor
        fused_corrected_sgd(ps, gs, vs, lr, m)
    return ps, vs


def fused_corrected_sgd(
    ps: list[Any], gs: list[Any], vs: list[Any], lr: Any, m: Any, grad_scale: Any = None
) -> None:
    """Eq. (9) on every ``p`` and ``v`` in place by one ``torch._fused_sgd_`` call (see the module docstring).

    ``grad_scale`` (a float32 tensor or ``None``): the kernel first divides
    each gradient by it and writes the quotient back (CPU only).
    """
    torch._fused_sgd_(
        ps,
        gs,
        vs,
        weight_decay=0.0,
        momentum=m,
        lr=-lr,
        dampening=2.0,  # b <- m b + (1 - 2) g = m b - g
        nesterov=False,
        maximize=False,
        is_first_step=False,
        grad_scale=grad_scale,
    )
