"""The README's library example runs, and what it says about the snapshot's keys is true."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the README's example uses NumPy; it runs once, in the NumPy leg",
)


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    (block,) = [b for b in blocks if "save_npz" in b]
    return block


def test_readme_names_every_key_chainer_lacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_example(), str(README), "exec"), {})
    keys = set(np.load(tmp_path / "snapshot.npz").files)
    extra = sorted(k for k in keys if k.startswith("loss_scaling."))
    assert extra, "the snapshot has no loss_scaling keys: the README's note is stale"
    text = README.read_text(encoding="utf-8")
    unnamed = [k for k in extra if f"`{k}`" not in text]
    assert not unnamed, f"the README does not name the snapshot keys {unnamed} that Chainer ignores"
    assert "same keys as Chainer" not in text
