"""A load needs memory for the arrays it loads plus a small constant, whatever the file holds.

Hostile files are built here without holding their inflated size in memory:
a member whose ``.npy`` header declares ``N`` elements followed by ``N``
zero elements streamed through the deflater (a "deflate bomb": 128 MiB of
data in about 128 KiB of file). Memory is measured with :mod:`tracemalloc`
(NumPy reports its array buffers to it) around the load, and, for one case,
as the peak resident set size of a child process.

Run with ``-s`` to see the measured peaks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy_format

import corrmom_ref as cr

MiB = 1 << 20
#: Elements of the model's one big parameter: 4 MiB of float32.
N = MiB
#: What a load may need beyond the arrays it returns.
SMALL_CONSTANT = 2 * MiB
#: Elements of float32 zeros in a bomb: 128 MiB inflated.
BOMB = 32 * MiB
SRC = str(Path(cr.__file__).parents[1])

#: File-level tests (no array backend involved): once per NumPy version, in the numpy and numpy1 legs.
pytestmark = pytest.mark.skipif(
    not {"numpy", "numpy1"} & set(os.environ.get("CORRMOM_BACKENDS", "numpy").split(",")),
    reason="file-level snapshot tests run in the numpy and numpy1 legs only",
)


def model() -> cr.Link:
    return cr.Link(
        W=cr.Parameter(np.linspace(-1, 1, N, dtype=np.float32)), b=cr.Parameter(np.ones(3, np.float32))
    )


def trained() -> cr.GradientMethod:
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(model())
    for p in opt.target.params():
        p.grad = np.full_like(p.array, 0.5)
    opt.update()
    return opt


def write_zeros_member(
    archive: zipfile.ZipFile, name: str, count: int, shape: tuple[int, ...] | None = None
) -> None:
    """A member whose header declares ``shape`` (default ``(count,)``) float32,
    followed by ``count`` zeros, streamed (never ``count`` floats in memory)."""
    header = {"descr": npy_format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
    header["shape"] = (count,) if shape is None else shape
    zeros = bytes(4 * MiB)
    with archive.open(name, "w", force_zip64=True) as member:
        npy_format.write_array_header_1_0(member, header)
        left = 4 * count
        while left:
            member.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))


def with_extra_members(obj: Any, add: Callable[[zipfile.ZipFile], None], drop: str | None = None) -> bytes:
    """``obj``'s snapshot with the members ``add`` writes (replacing ``drop``)."""
    buffer = io.BytesIO()
    cr.serializers.save_npz(buffer, obj)
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != drop:
                target.writestr(info, source.read(info))
        add(target)
    return out.getvalue()


def peak_during(action: Callable[[], Any]) -> int:
    """Peak traced bytes above those traced before ``action`` (whatever it raises)."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with contextlib.suppress(ValueError, TypeError):
            action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


@pytest.fixture(scope="module")
def bomb_under_unused_key() -> bytes:
    data = with_extra_members(trained(), lambda z: write_zeros_member(z, "unused/bomb.npy", BOMB))
    assert len(data) < 2 * MiB  # about 128 KiB of bomb for 128 MiB of zeros, plus the 4 MiB state
    return data


def test_deflate_bomb_under_an_unused_key_is_never_inflated(bomb_under_unused_key: bytes) -> None:
    opt = cr.CorrectedMomentumSGD(lr=0.1).setup(model())
    reference = trained()
    peak = peak_during(lambda: cr.serializers.load_npz(io.BytesIO(bomb_under_unused_key), opt))
    loaded = 4 * (N + 3)  # the state v of W and of b
    print(
        f"\nbomb of {4 * BOMB // MiB} MiB under an unused key: peak {peak / MiB:.2f} MiB, loaded {loaded / MiB:.2f} MiB"
    )
    np.testing.assert_array_equal(
        opt.target.W.update_rule.state["v"], reference.target.W.update_rule.state["v"]
    )
    assert peak <= loaded + SMALL_CONSTANT


def test_model_load_peak_is_the_arrays_it_loads(bomb_under_unused_key: bytes) -> None:
    target = model()
    source = trained().target
    data = with_extra_members(source, lambda z: write_zeros_member(z, "unused.npy", BOMB))
    peak = peak_during(lambda: cr.serializers.load_npz(io.BytesIO(data), target))
    loaded = 4 * (N + 3)
    print(f"\nmodel load (4 MiB of parameters) beside a bomb: peak {peak / MiB:.2f} MiB")
    np.testing.assert_array_equal(target.W.array, source.W.array)
    assert peak <= loaded + SMALL_CONSTANT


@pytest.mark.parametrize(
    ("member", "count", "shape", "match"),
    [
        pytest.param("W.npy", BOMB, None, r"parameter /W: snapshot has shape \(33554432,\)", id="huge-shape"),
        pytest.param(
            "W.npy",
            BOMB,
            (N,),
            r"'W'.*holds 134217728 data bytes.*declares shape \(1048576,\)",
            id="huge-data",
        ),
    ],
)
def test_huge_member_under_a_used_key_is_refused_without_inflating(
    member: str, count: int, shape: tuple[int, ...] | None, match: str
) -> None:
    """128 MiB under ``W``: refused from its header (a shape that does not fit) or from
    the zip directory (more data than the header's shape), before any data is read."""
    source = model()
    data = with_extra_members(source, lambda z: write_zeros_member(z, member, count, shape), drop=member)
    target = model()
    before = target.W.array.copy()
    with pytest.raises(ValueError, match=match):
        cr.serializers.load_npz(io.BytesIO(data), target)
    np.testing.assert_array_equal(target.W.array, before)
    peak = peak_during(lambda: cr.serializers.load_npz(io.BytesIO(data), target))
    print(
        f"\n128 MiB member under the used key W ({member}, shape {shape}): refused, peak {peak / MiB:.2f} MiB"
    )
    assert peak <= SMALL_CONSTANT


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only")
def test_resident_memory_of_a_process_loading_a_bomb(tmp_path: Path) -> None:
    """The same as above, measured as the peak RSS of a fresh process: a 256 MiB bomb
    under an unused key raises it by less than the loaded 4 MiB plus 16 MiB."""
    path = tmp_path / "bomb.npz"
    path.write_bytes(with_extra_members(trained(), lambda z: write_zeros_member(z, "unused.npy", 2 * BOMB)))
    script = textwrap.dedent(
        f"""
        import io, json, resource, sys
        import numpy as np
        import corrmom_ref as cr
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_load_memory_bounds import model, trained
        warm = trained()
        buffer = io.BytesIO()
        cr.serializers.save_npz(buffer, warm)
        cr.serializers.load_npz(io.BytesIO(buffer.getvalue()), warm)  # imports everything a load needs
        del buffer
        opt = cr.CorrectedMomentumSGD(lr=0.1).setup(model())
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cr.serializers.load_npz(sys.argv[1], opt)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"before_kib": before, "after_kib": after}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    grown = (result["after_kib"] - result["before_kib"]) * 1024
    print(
        f"\n256 MiB bomb, fresh process: peak RSS grew by {grown / MiB:.2f} MiB (file {path.stat().st_size // 1024} KiB)"
    )
    assert grown <= 4 * MiB + 16 * MiB


def test_oversized_zip_directory_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's zipfile parses the whole central directory (about 6 bytes of memory
    per byte of it): one larger than the limit is refused from the zip's end
    record. The limit (8 MiB) is lowered here to keep the file small."""
    from corrmom_ref.serializers import _archive

    monkeypatch.setattr(_archive, "MAX_DIRECTORY_BYTES", 64 * 1024)
    target = model()
    data = with_extra_members(
        trained().target, lambda z: [z.writestr(f"unused/{i:06d}.npy", b"") for i in range(2000)]
    )
    with pytest.raises(ValueError, match=r"zip directory of \d+ bytes, over the 65536"):
        cr.serializers.load_npz(io.BytesIO(data), target)
    small = with_extra_members(
        trained().target, lambda z: [z.writestr(f"u/{i}.npy", b"") for i in range(100)]
    )
    cr.serializers.load_npz(io.BytesIO(small), target)  # under the limit: loads
    np.testing.assert_array_equal(target.W.array, trained().target.W.array)
