"""Every scalar a snapshot holds is validated (type, range, finiteness) before anything is assigned.

Ranges (see :mod:`corrmom_ref._scalar_checks`): counters ``t``, ``epoch`` and a
rule's ``t`` in ``[0, 2**63 - 1]`` (int64, what the snapshot stores); the
growth interval in ``[1, 2**63 - 1]``; the loss scale finite in
``[2**-126, 2**126]`` (the scale and its reciprocal are normal float32
numbers); the loss-scaling flags are bools. ``save_npz`` never writes a
pickle: a value that would need one is refused before the file is touched.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backends import Backend
from helpers import assert_fails_cleanly, corrupt, trained

import corrmom_ref as cr


def setter(key: str, value: Any) -> Callable[[dict], None]:
    return lambda arrays: arrays.__setitem__(key, value)


BAD_SCALARS = [
    pytest.param("loss_scaling.scale", np.float64(np.inf), ValueError, id="scale-inf"),
    pytest.param("loss_scaling.scale", np.float64(0.0), ValueError, id="scale-zero"),
    pytest.param("loss_scaling.scale", np.float64(np.nan), ValueError, id="scale-nan"),
    pytest.param("loss_scaling.scale", np.float64(1e-300), ValueError, id="scale-1e-300"),
    pytest.param("loss_scaling.scale", np.float64(2.0**-127), ValueError, id="scale-below-2**-126"),
    pytest.param("loss_scaling.scale", np.float64(2.0**127), ValueError, id="scale-above-2**126"),
    pytest.param("loss_scaling.scale", np.bool_(True), TypeError, id="scale-bool"),
    pytest.param("loss_scaling.scale", np.str_("1.0"), TypeError, id="scale-str"),
    pytest.param("t", np.int64(-1), ValueError, id="t-negative"),
    pytest.param("epoch", np.int64(-3), ValueError, id="epoch-negative"),
    pytest.param("l1/W/t", np.int64(-1), ValueError, id="rule-t-negative"),
    pytest.param("t", np.bool_(True), TypeError, id="t-bool"),
    pytest.param("epoch", np.bool_(False), TypeError, id="epoch-bool"),
    pytest.param("l1/W/t", np.bool_(True), TypeError, id="rule-t-bool"),
    pytest.param("t", np.uint64(2**64 - 1), ValueError, id="t-2**64-1"),
    pytest.param("l1/b/t", np.uint64(2**63), ValueError, id="rule-t-2**63"),
    pytest.param("loss_scaling.dynamic", np.str_("no"), TypeError, id="dynamic-str"),
    pytest.param("loss_scaling.dynamic", np.int64(1), TypeError, id="dynamic-int"),
    pytest.param("loss_scaling.nonfinite_ever", np.str_("yes"), TypeError, id="nonfinite_ever-str"),
    pytest.param("loss_scaling.interval", np.bool_(True), TypeError, id="interval-bool"),
    pytest.param("loss_scaling.interval", np.uint64(2**64 - 1), ValueError, id="interval-2**64-1"),
    pytest.param("loss_scaling.interval", np.float64(3.0), TypeError, id="interval-float"),
]


@pytest.mark.parametrize(("key", "value", "error"), BAD_SCALARS)
def test_bad_scalar_is_refused_naming_its_key(bk: Backend, key: str, value: Any, error: type) -> None:
    opt = trained(bk)
    file = corrupt(bk, setter(key, value))
    assert_fails_cleanly(bk, opt, lambda: cr.serializers.load_npz(file, opt), error, re.escape(repr(key)))


@pytest.mark.parametrize(
    ("key", "value", "attribute", "expected"),
    [
        pytest.param("t", np.int64(2**63 - 1), "t", 2**63 - 1, id="t-max"),
        pytest.param("epoch", np.uint64(0), "epoch", 0, id="epoch-uint64-zero"),
        pytest.param("loss_scaling.scale", np.float64(2.0**-126), "loss_scale", 2.0**-126, id="scale-lowest"),
        pytest.param("loss_scaling.scale", np.float64(2.0**126), "loss_scale", 2.0**126, id="scale-highest"),
        pytest.param(  # a float32 scale keeps its type (it changes 0-d promotion on NumPy 1.x, as in Chainer)
            "loss_scaling.scale", np.float32(0.5), "loss_scale", np.float32(0.5), id="scale-float32"
        ),
    ],
)
def test_edge_values_load(bk: Backend, key: str, value: Any, attribute: str, expected: Any) -> None:
    """The ends of each range are accepted, with the exact value."""
    opt = trained(bk)
    cr.serializers.load_npz(corrupt(bk, setter(key, value)), opt)
    loaded = getattr(opt, attribute)
    assert loaded == expected and type(loaded) is type(expected)


def test_the_largest_counter_cannot_be_saved_once_it_has_grown(bk: Backend, tmp_path: Path) -> None:
    """``t = 2**63 - 1`` loads; a step makes it ``2**63``, which int64 cannot hold:
    the next save raises naming ``'t'`` and leaves the previous file as it was
    (today's main wrote a uint64, and at ``2**64`` a pickled object array)."""
    opt = trained(bk)
    cr.serializers.load_npz(corrupt(bk, setter("t", np.int64(2**63 - 1))), opt)
    opt.update()
    assert opt.t == 2**63
    path = tmp_path / "snapshot.npz"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError, match=r"'t'.*int64"):
        cr.serializers.save_npz(path, opt)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.npz"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(np.array([{"payload": 1}, None], dtype=object), id="object-array"),
        pytest.param(np.array(2**64), id="int-2**64"),
        pytest.param(2**64, id="python-int-2**64"),
    ],
)
def test_save_never_writes_a_pickle(value: Any, tmp_path: Path) -> None:
    """A value npz could only hold as a pickle is refused, naming the key, before
    the file is touched (a path is not created, a file object not written)."""
    arrays = {"fine": np.zeros(3, np.float32), "bad/key": value}
    path = tmp_path / "snapshot.npz"
    with pytest.raises((TypeError, ValueError), match=r"'bad/key'.*pickle"):
        cr.serializers.save_npz(path, arrays)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    buffer = io.BytesIO()
    with pytest.raises((TypeError, ValueError), match=r"'bad/key'.*pickle"):
        cr.serializers.save_npz(buffer, arrays)
    assert buffer.getvalue() == b""
