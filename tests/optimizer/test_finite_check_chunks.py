"""The finiteness check of dynamic loss scaling: concatenated chunks answer as each gradient would.

Chunks are made tiny here (a few elements) so that generated lists cross
chunk boundaries, cut large gradients into slices and mix dtypes; the answer
must be NumPy's ``isfinite(g).all()`` for each gradient.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
from backends import Backend
from hypothesis import given
from hypothesis import strategies as st

from corrmom_ref import _finite

_VALUES = st.sampled_from([0.5, -3.0, 0.0, -0.0, 3e38, -3e38, math.inf, -math.inf, math.nan])


@st.composite
def _gradients(draw: st.DrawFn) -> list[tuple[str, np.ndarray]]:
    """A list of (dtype, values): lengths 0 to 12 (some larger than a chunk), mostly finite, some
    near float32's largest value (a sum over a chunk would overflow)."""
    count = draw(st.integers(1, 8))
    out = []
    for _ in range(count):
        dtype = draw(st.sampled_from(["float32", "float32", "float64", "int64"]))
        size = draw(st.integers(0, 12))
        values = np.linspace(-1.0, 1.0, size) * draw(st.sampled_from([1.0, 1.0, 3e38]))  # near float32's max
        for index in draw(st.lists(st.integers(0, max(size - 1, 0)), max_size=2)) if size else []:
            values[index] = draw(_VALUES)
        if dtype == "int64":
            values = np.clip(np.nan_to_num(values), -7, 7)
        out.append((dtype, values))
    return out


@given(gradients=_gradients(), chunk=st.integers(1, 9), shape_2d=st.booleans())
def test_finite_flags_match_each_gradient(
    bk: Backend, gradients: list[tuple[str, np.ndarray]], chunk: int, shape_2d: bool
) -> None:
    natives, expected = [], []
    for dtype, values in gradients:
        host = values.astype(dtype)
        if shape_2d and host.size % 2 == 0:
            host = host.reshape(2, -1)
        natives.append(bk.asarray(host, dtype))
        expected.append(bool(np.isfinite(host).all()) if host.dtype.kind == "f" else True)
    with mock.patch.object(_finite, "CHUNK_ELEMENTS", chunk):
        assert _finite.finite_flags(natives) == expected
        assert _finite.all_finite(natives) == all(expected)


def test_an_empty_list_and_empty_gradients_are_finite(bk: Backend) -> None:
    assert _finite.finite_flags([]) == []
    assert _finite.finite_flags([bk.asarray(np.zeros(0), "float32")] * 2) == [True, True]
