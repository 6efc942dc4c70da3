r"""Annealed Gaussian gradient noise (Neelakantan et al., 2015)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace, device, is_cupy_array, is_numpy_array

__all__ = ["GradientNoise", "exponential_decay_noise"]

NoiseFunc = Callable[[Any, tuple[int, ...], Any, "GradientNoise", Any], Any]


def _noise_module(x: Any) -> Any:
    """The module a noise function gets for ``x``: ``numpy`` or ``cupy`` itself, else ``x``'s Array API namespace."""
    if is_numpy_array(x):
        import numpy

        return numpy
    if is_cupy_array(x):
        import cupy  # type: ignore[import-not-found]

        return cupy
    return array_namespace(x)


def exponential_decay_noise(
    xp: Any, shape: tuple[int, ...], dtype: Any, hook: GradientNoise, rule: Any
) -> Any:
    r"""Gaussian noise with :math:`\sigma^2 = \eta / (1 + t)^{0.55}`, ``t`` the rule's count.

    The Array API has no random numbers, so the noise is drawn on the host by
    the hook's NumPy generator and moved to the gradient's device.
    """
    std = math.sqrt(hook.eta / math.pow(1 + rule.t, 0.55))
    return xp.asarray(hook.rng.normal(0.0, std, shape), dtype=dtype)


class GradientNoise:
    r"""Add noise to every gradient: :math:`g \leftarrow g + \epsilon`.

    Args:
        eta: The noise scale :math:`\eta`.
        noise_func: ``noise_func(xp, shape, dtype, hook, rule)`` returning the
            noise array (default :func:`exponential_decay_noise`). ``xp`` is
            the gradient's own module where Chainer has one: ``numpy`` for
            NumPy arrays and ``cupy`` for CuPy arrays, as Chainer passes them;
            for other arrays their Array API namespace.
        seed: Seed of the host generator used by the default noise function.
    """

    name = "GradientNoise"
    call_for_each_param = True
    timing = "pre"

    def __init__(
        self, eta: float, noise_func: NoiseFunc = exponential_decay_noise, seed: int | None = None
    ) -> None:
        import numpy

        self.eta = eta
        self.noise_func = noise_func
        self.rng = numpy.random.default_rng(seed)  # the host's generator: the Array API has none

    def __call__(self, rule: Any, param: Any) -> None:
        g = param.grad
        if g is None:
            return
        noise = self.noise_func(_noise_module(g), tuple(g.shape), g.dtype, self, rule)
        param.grad = xpx.at(g)[...].add(array_namespace(g).asarray(noise, device=device(g)))
