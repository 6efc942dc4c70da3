"""Elementwise gradient clipping."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace

__all__ = ["GradientHardClipping", "clip_elements"]


def clip_elements(g: Any, lower_bound: float, upper_bound: float) -> Any:
    """``g`` clipped elementwise into ``[lower_bound, upper_bound]``, written into ``g`` where it is writeable."""
    return xpx.at(g)[...].set(array_namespace(g).clip(g, lower_bound, upper_bound))


class GradientHardClipping:
    r"""Clip every gradient element into ``[lower_bound, upper_bound]``.

    Args:
        lower_bound: Smallest allowed value.
        upper_bound: Largest allowed value.
    """

    name = "GradientHardClipping"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, lower_bound: float, upper_bound: float) -> None:
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def __call__(self, rule: Any, param: Any) -> None:
        grad = param.grad
        if grad is None:
            return
        param.grad = clip_elements(grad, self.lower_bound, self.upper_bound)
