"""Opt-in flat-buffer mode: many parameters as views of one contiguous buffer per dtype and device.

An optimizer step over many small parameters is dominated by per-parameter
overhead, not memory traffic. :func:`flatten` copies every parameter (and
gradient) of a link into one buffer per ``(dtype, device)`` group, rebinds
each parameter's ``array`` and ``grad`` to views of it, and returns a
:class:`~corrmom_ref.Link` holding one :class:`~corrmom_ref.Parameter` per
buffer. An optimizer set up on that link updates every parameter in one
elementwise pass per group, and the model sees the new values through its
views::

    flat = corrmom_ref.flat.flatten(model)
    opt = corrmom_ref.CorrectedMomentumSGD(lr=0.1).setup(flat)
    ...  # write gradients into model params' .grad views (param.grad[...] = g)
    opt.update()

The step is elementwise, so each element gets exactly the arithmetic of the
per-parameter step. What this mode gives up, by design: per-parameter
hyperparameters and update-rule hooks (one rule per buffer), hooks that use a
per-parameter norm (GradientLARS), and Chainer-compatible snapshot keys (the
state lives per buffer). It needs a backend whose arrays are writeable and
whose slices are views (NumPy, PyTorch, CuPy); a gradient rebound to a new
array instead of written into its view is not seen.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace, device, is_writeable_array

from corrmom_ref._step.blocked import slices_are_views
from corrmom_ref.link import Link, Parameter

__all__ = ["flatten"]


def flatten(link: Link) -> Link:
    """Move ``link``'s parameters into flat buffers; return the link of buffer parameters.

    Buffers are named ``flat0``, ``flat1``, ... in order of first appearance of
    their ``(dtype, device)`` group in ``link.namedparams()``. Gradients that
    are ``None`` become zero views.

    Raises:
        ValueError: if the backend cannot update views of a buffer in place,
            or a parameter is not initialised yet (it has no array to move;
            the message names it).
    """
    groups: dict[tuple[str, str], list[Parameter]] = {}
    for path, param in link.namedparams():
        if param.array is None:
            raise ValueError(f"parameter {path} is not initialised yet: flat buffers need every array")
        groups.setdefault((str(param.array.dtype), str(device(param.array))), []).append(param)
    flat = Link()
    for i, params in enumerate(groups.values()):
        flat.add(f"flat{i}", _flatten_group(params))
    return flat


def _flatten_group(params: list[Parameter]) -> Parameter:
    first = params[0].array
    xp = array_namespace(first)
    total = sum(math.prod(p.array.shape) for p in params)
    values = xp.zeros((total,), dtype=first.dtype, device=device(first))
    grads = xp.zeros((total,), dtype=first.dtype, device=device(first))
    if not (is_writeable_array(values) and slices_are_views(xp)):
        raise ValueError(f"flat-buffer mode needs writeable views; {xp.__name__} arrays have none")
    start = 0
    for param in params:
        shape = tuple(param.array.shape)
        stop = start + math.prod(shape)
        value_view = _view(xp, values, start, stop, shape)
        grad_view = _view(xp, grads, start, stop, shape)
        value_view[...] = param.array
        if param.grad is not None:
            grad_view[...] = param.grad
        param.array, param.grad = value_view, grad_view
        start = stop
    buffer = Parameter(values, name=None)
    buffer.grad = grads
    return buffer


def _view(xp: Any, buffer: Any, start: int, stop: int, shape: tuple[int, ...]) -> Any:
    return xp.reshape(buffer[start:stop], shape, copy=False)
