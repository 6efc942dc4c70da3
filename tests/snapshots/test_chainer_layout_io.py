"""Snapshots written and read through ``serializers.chainer_layout`` (the torch and optax
integrations' path) keep the promises of ``save_npz``/``load_npz`` (docs/reliability.md):
a failed save leaves the previous file as it was, no pickle is ever written, and a damaged
member is refused with its key named before its data is trusted."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from corrmom_ref.serializers import _archive, chainer_layout
from corrmom_ref.serializers.chainer_layout import OptimizerSnapshot, ParamSnapshot

pytestmark = pytest.mark.skipif(
    "numpy" not in __import__("os").environ.get("CORRMOM_BACKENDS", "numpy"),
    reason="host-side file tests: the NumPy legs run them",
)


def snapshot(t: int) -> OptimizerSnapshot:
    v = np.arange(6, dtype=np.float32).reshape(2, 3) * t
    return OptimizerSnapshot(t=t, epoch=1, params={"l1/W": ParamSnapshot(t, {"v": v})})


def test_round_trip(tmp_path):
    path = tmp_path / "s.npz"
    chainer_layout.write_optimizer_npz(path, snapshot(3))
    back = chainer_layout.read_optimizer_npz(path)
    assert (back.t, back.epoch, back.params["l1/W"].t) == (3, 1, 3)
    np.testing.assert_array_equal(back.params["l1/W"].state["v"], snapshot(3).params["l1/W"].state["v"])


def test_an_object_array_is_refused_before_the_file_is_touched(tmp_path):
    path = tmp_path / "s.npz"
    chainer_layout.write_optimizer_npz(path, snapshot(1))
    before = path.read_bytes()
    bad = snapshot(2)
    bad.extra["note"] = np.array([{"a": 1}], dtype=object)
    with pytest.raises(TypeError, match=r"'note'.*pickle"):
        chainer_layout.write_optimizer_npz(path, bad)
    assert path.read_bytes() == before


def test_a_save_failing_midway_keeps_the_previous_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    chainer_layout.write_optimizer_npz(path, snapshot(1))
    before = path.read_bytes()

    def fail_midway(file, arrays, compression):
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_archive, "write_npz", fail_midway)
    with pytest.raises(OSError, match="No space"):
        chainer_layout.write_optimizer_npz(path, snapshot(2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary left


def test_a_truncated_member_is_refused_naming_its_key(tmp_path):
    good = tmp_path / "good.npz"
    chainer_layout.write_optimizer_npz(good, snapshot(1), compression=False)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:-8] if info.filename == "l1/W/v.npy" else data)
    with pytest.raises(ValueError, match="l1/W/v"):
        chainer_layout.read_optimizer_npz(bad)


def test_members_outside_the_prefix_are_never_inflated(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    arrays = {"updater/optimizer/t": np.asarray(1), "model/W": np.zeros((64, 64), np.float32)}
    chainer_layout.write_npz_arrays(path, arrays)
    read = []
    original = _archive.StoredArray.read

    def spy(self):
        read.append(self.key)
        return original(self)

    monkeypatch.setattr(_archive.StoredArray, "read", spy)
    assert set(chainer_layout.read_npz_arrays(path, "updater/optimizer/")) == {"t"}
    assert read == ["updater/optimizer/t"]


def test_torch_and_optax_saves_keep_the_previous_snapshot_on_failure(tmp_path, monkeypatch):
    """Both integrations write through chainer_layout's atomic writer."""
    writers = []
    if _importable("torch"):
        import torch

        import corrmom_ref.torch as crt

        net = torch.nn.Linear(2, 1)
        opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.1)
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
        writers.append(("torch", lambda path: crt.save_chainer_snapshot(path, opt)))
    if _importable("jax") and _importable("optax"):
        import jax.numpy as jnp

        import corrmom_ref.optax as co

        state = co.corrected_momentum_sgd(0.1).init({"w": jnp.zeros(2)})
        writers.append(("optax", lambda path: co.save_chainer_snapshot(path, state)))
    if not writers:
        pytest.skip("neither torch nor jax with optax is installed")
    for name, write in writers:
        path = tmp_path / f"{name}.npz"
        write(path)
        before = path.read_bytes()
        with monkeypatch.context() as patch:
            patch.setattr(_archive, "write_npz", _failing_writer)
            with pytest.raises(OSError, match="No space"):
                write(path)
        assert path.read_bytes() == before, name


def _failing_writer(file, arrays, compression):
    file.write(b"PK\x03\x04 partial")
    raise OSError(28, "No space left on device")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
