"""Generated damage: every loader loads the snapshot it was given or raises SnapshotError (issue 20, item 10).

Hypothesis flips one to three bits of a valid snapshot (stored or deflated)
or cuts it short. Each of the three loaders then either loads exactly the
values of the undamaged snapshot (a flip zipfile does not read, such as a
timestamp, changes nothing that loads) or raises
:class:`corrmom_ref.serializers.SnapshotError` naming the file, and a refused
load leaves its target as it was. On c1ab618 such files also raised zipfile's
``NotImplementedError`` and ``RuntimeError``, ``KeyError``, ``TypeError`` and,
from optax, errors from inside JAX.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshot_files import LOADERS, members_of, trained_reference, zip_bytes

import corrmom_ref as cr

pytest.importorskip("torch")
pytest.importorskip("optax")

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="file-level snapshot tests run in the numpy leg only",
)

VALID = {
    "stored": zip_bytes(list(members_of(trained_reference()).items()), zipfile.ZIP_STORED),
    "deflated": zip_bytes(list(members_of(trained_reference()).items()), zipfile.ZIP_DEFLATED),
}


def damaged(data: bytes, flips: list[int], cut: int | None) -> bytes:
    raw = bytearray(data)
    for bit in flips:
        raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    return bytes(raw if cut is None else raw[: cut % len(raw)])


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        (a[k] is None and b[k] is None)
        or (a[k] is not None and b[k] is not None and np.array_equal(a[k], b[k]))
        for k in a
    )


EXPECTED: dict[tuple[str, str], dict[str, Any]] = {}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("layout", sorted(VALID))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.integers(min_value=0, max_value=8 * 4096), min_size=0, max_size=3),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=4096)),
)
def test_damaged_snapshot_loads_as_saved_or_raises_snapshot_error(
    loader: str, layout: str, flips: list[int], cut: int | None
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        if (loader, layout) not in EXPECTED:
            good = Path(directory) / "good.npz"
            good.write_bytes(VALID[layout])
            control = LOADERS[loader](good)
            control.load()
            EXPECTED[loader, layout] = control.result()
        path = Path(directory) / "damaged.npz"
        path.write_bytes(damaged(VALID[layout], flips, cut))
        target = LOADERS[loader](path)
        before = target.held()
        try:
            target.load()
        except cr.serializers.SnapshotError as error:
            assert repr(str(path)) in str(error), str(error)
            assert same(before, target.held())
            return
        assert same(target.result(), EXPECTED[loader, layout])
