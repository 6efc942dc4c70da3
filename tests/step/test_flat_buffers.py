"""Flat-buffer mode against the per-parameter optimizer: same values, bitwise, on the generic path."""

from __future__ import annotations

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref import flat
from corrmom_ref.fast_paths import use_fast_paths

SHAPES = [(3, 4), (5,), (), (2, 2, 2), (0,), (70_000,)]


def _native(name):
    if name == "numpy":
        return np.asarray, np.asarray
    torch = pytest.importorskip("torch")
    return torch.from_numpy, lambda t: t.numpy()


def _model(to_native, seed=0):
    rng = np.random.default_rng(seed)
    link = cr.Link(
        **{
            f"p{i}": cr.Parameter(to_native(rng.standard_normal(s).astype(np.float32)))
            for i, s in enumerate(SHAPES)
        }
    )
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    return link, grads


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_flat_steps_equal_per_parameter_steps_bitwise(backend):
    to_native, to_numpy = _native(backend)
    reference, grads = _model(to_native)
    model, _ = _model(to_native)
    buffers = flat.flatten(model)
    assert len(list(buffers.params())) == 1
    per_param = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(reference)
    flat_opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(buffers)
    with use_fast_paths(False):
        for step in range(3):
            for p_ref, p_flat, g in zip(reference.params(), model.params(), grads, strict=True):
                scaled = np.asarray(g * (step + 1), dtype=g.dtype)  # NumPy 1.x would make 0-d float64
                p_ref.grad = to_native(scaled)
                p_flat.grad[...] = to_native(scaled)  # written into the view
            per_param.update()
            flat_opt.update()
    for p_ref, p_flat in zip(reference.params(), model.params(), strict=True):
        np.testing.assert_array_equal(to_numpy(p_flat.array), to_numpy(p_ref.array))
        assert tuple(p_flat.array.shape) == tuple(p_ref.array.shape)


def test_one_buffer_per_dtype():
    link = cr.Link(
        a=cr.Parameter(np.zeros(3, np.float32)),
        b=cr.Parameter(np.ones(2, np.float64)),
        c=cr.Parameter(np.ones(4, np.float32)),
    )
    buffers = dict(flat.flatten(link).namedparams())
    assert sorted((k, v.array.shape[0], str(v.array.dtype)) for k, v in buffers.items()) == [
        ("/flat0", 7, "float32"),
        ("/flat1", 2, "float64"),
    ]
    assert np.shares_memory(link.c.array, buffers["/flat0"].array)


def test_immutable_backend_is_refused():
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(ValueError, match="writeable views"):
        flat.flatten(cr.Link(a=cr.Parameter(jnp.zeros(3))))


def test_uninitialized_parameter_is_refused_naming_it():
    model = cr.Link(W=cr.Parameter(np.zeros(2, np.float32)), l1=cr.Link(lazy=cr.Parameter()))
    with pytest.raises(ValueError, match="/l1/lazy is not initialised"):
        flat.flatten(model)
    assert model.W.array.base is None  # nothing moved into a buffer
