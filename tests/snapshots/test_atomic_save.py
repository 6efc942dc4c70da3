"""``save_npz`` to a path replaces the file atomically: it is always the old snapshot or the new one.

Real failures, not mocks: a child process SIGKILLed at random moments while it
saves over an existing snapshot again and again; a full filesystem (a 1 MiB
tmpfs mounted in a private mount namespace with ``unshare``; skipped with the
reason where that is not allowed); a file-size limit (``RLIMIT_FSIZE``, with
SIGXFSZ ignored so that the write fails with EFBIG). After each, the file
must load as one of the complete snapshots, and a failed save must leave no
temporary file behind. Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import corrmom_ref as cr

SRC = str(Path(cr.__file__).parents[1])

#: File-level tests (no array backend involved): once per NumPy version, in the numpy and numpy1 legs.
pytestmark = pytest.mark.skipif(
    not {"numpy", "numpy1"} & set(os.environ.get("CORRMOM_BACKENDS", "numpy").split(",")),
    reason="file-level snapshot tests run in the numpy and numpy1 legs only",
)
ENV = {**os.environ, "PYTHONPATH": SRC}
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and resource limits")


def snapshot(seed: int, elements: int) -> dict[str, np.ndarray]:
    """A dict snapshot whose every array tells which ``seed`` wrote it."""
    rng = np.random.default_rng(seed)
    return {
        "t": np.asarray(seed, dtype=np.int64),
        "W": rng.standard_normal(elements).astype(np.float32),
        "l1/b": np.full(7, seed, dtype=np.float64),
    }


def which_snapshot(path: Path, candidates: dict[int, dict[str, np.ndarray]]) -> int | None:
    """The seed whose snapshot ``path`` holds completely (read with NumPy itself), else None."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            content = {key: npz[key] for key in npz.files}
    except Exception:
        return None
    for seed, expected in candidates.items():
        if content.keys() == expected.keys() and all(
            np.array_equal(content[k], expected[k]) for k in expected
        ):
            return seed
    return None


def leftovers(directory: Path, keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


CHILD_SAVES_FOREVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from test_atomic_save import snapshot
    import corrmom_ref as cr
    path, elements, compression = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    snapshots = [snapshot(1, elements), snapshot(2, elements)]
    print("ready", flush=True)
    k = 0
    while True:
        cr.serializers.save_npz(path, snapshots[k % 2], compression=compression)
        k += 1
    """
)


@posix_only
@pytest.mark.parametrize("compression", [True, False], ids=["compressed", "uncompressed"])
def test_sigkill_during_repeated_saves_leaves_old_or_new(tmp_path: Path, compression: bool) -> None:
    """20 kills at random moments of a loop of saves (4 MiB of float32, alternating
    two snapshots) over an existing snapshot: the file always loads as one of them."""
    kills, elements = 20, 1 << 20
    path = tmp_path / "snapshot.npz"
    candidates = {1: snapshot(1, elements), 2: snapshot(2, elements)}
    cr.serializers.save_npz(path, candidates[1], compression=compression)
    rng = random.Random(12)
    survived, temporaries = 0, 0
    child_command = [sys.executable, "-c", CHILD_SAVES_FOREVER, str(Path(__file__).parent)]
    for _ in range(kills):
        child = subprocess.Popen(
            [*child_command, str(path), str(elements), "1" if compression else "0"],
            stdout=subprocess.PIPE,
            env=ENV,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert child.stdout is not None
            child.stdout.close()
        if which_snapshot(path, candidates) is not None:
            survived += 1
        stale = leftovers(tmp_path, keep=path.name)
        temporaries += len(stale)  # a kill during a write leaves its temporary file
        assert all(name.startswith(".snapshot.npz.") and name.endswith(".tmp") for name in stale), stale
        for name in stale:
            os.unlink(tmp_path / name)
    print(
        f"\n{kills} SIGKILLs ({'compressed' if compression else 'uncompressed'}): {survived} loadable, "
        f"{temporaries} of them during a write"
    )
    assert survived == kills
    assert temporaries > 0  # the kills did land inside saves (else the test proves nothing)


CHILD_SAVES_ONCE = textwrap.dedent(
    """
    import errno, json, os, resource, signal, sys
    sys.path.insert(0, sys.argv[1])
    from test_atomic_save import snapshot
    import corrmom_ref as cr
    path, limit = sys.argv[2], int(sys.argv[3])
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        cr.serializers.save_npz(path, snapshot(2, 1 << 18), compression=False)
        print(json.dumps({"errno": None}))
    except OSError as error:
        print(json.dumps({"errno": error.errno, "message": str(error)}))
    """
)


@posix_only
def test_file_size_limit_keeps_the_old_snapshot(tmp_path: Path) -> None:
    """RLIMIT_FSIZE below the new snapshot's size: the save fails with EFBIG, the old
    snapshot (smaller than the limit) is intact, and no temporary file is left."""
    path = tmp_path / "snapshot.npz"
    old = snapshot(1, 1 << 16)  # 256 KiB of float32
    cr.serializers.save_npz(path, old, compression=False)
    done = subprocess.run(
        [sys.executable, "-c", CHILD_SAVES_ONCE, str(Path(__file__).parent), str(path), str(512 * 1024)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["errno"] == errno.EFBIG, result
    assert which_snapshot(path, {1: old}) == 1
    assert leftovers(tmp_path, keep=path.name) == []


def _unshare_tmpfs_command() -> list[str] | None:
    """``unshare`` into a private user and mount namespace (root inside), or None."""
    unshare = shutil.which("unshare")
    return None if unshare is None else [unshare, "--user", "--map-root-user", "--mount"]


FULL_DISK = textwrap.dedent(
    """
    import json, os, sys
    tests, directory = sys.argv[1], sys.argv[2]
    sys.path.insert(0, tests)
    from test_atomic_save import snapshot, which_snapshot, leftovers
    from pathlib import Path
    import corrmom_ref as cr
    path = Path(directory) / "snapshot.npz"
    old = snapshot(1, 1 << 16)  # 256 KiB: fits the 1 MiB filesystem
    cr.serializers.save_npz(path, old, compression=False)
    try:
        cr.serializers.save_npz(path, snapshot(2, 1 << 19), compression=False)  # 2 MiB: does not fit
        error = None
    except OSError as failure:
        error = failure.errno
    print(json.dumps({
        "errno": error,
        "old_intact": which_snapshot(path, {1: old}) == 1,
        "leftovers": leftovers(Path(directory), keep=path.name),
    }))
    """
)


@posix_only
def test_full_filesystem_keeps_the_old_snapshot(tmp_path: Path) -> None:
    """On a 1 MiB tmpfs holding a 256 KiB snapshot, saving a 2 MiB one fails with ENOSPC;
    the old snapshot is intact and no temporary file is left."""
    command = _unshare_tmpfs_command()
    if command is None:
        pytest.skip("no unshare(1) to mount a small tmpfs in a private mount namespace")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {mount_point} || exit 77; "
        f'exec "{sys.executable}" -c "$0" {Path(__file__).parent} {mount_point}'
    )
    done = subprocess.run(
        [*command, "sh", "-c", script, FULL_DISK],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    if done.returncode == 77 or (done.returncode != 0 and "unshare" in done.stderr):
        pytest.skip(f"cannot mount a tmpfs here (unprivileged user namespaces off?): {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert result == {"errno": errno.ENOSPC, "old_intact": True, "leftovers": []}


def test_an_error_while_writing_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    """Any exception from the writer (here: a failure halfway) removes the temporary file."""
    from corrmom_ref.serializers._atomic import replace_file

    path = tmp_path / "snapshot.npz"
    path.write_bytes(b"old")

    def failing(file: Any) -> None:
        file.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_file(path, failing)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path, keep=path.name) == []


@posix_only
def test_permissions_and_symlinks_are_kept(tmp_path: Path) -> None:
    """As ``open(path, "wb")`` did: the file keeps its mode, and a symlink stays a
    symlink (the file it points to is replaced)."""
    real = tmp_path / "real.npz"
    cr.serializers.save_npz(real, snapshot(1, 8))
    real.chmod(0o640)
    link = tmp_path / "latest.npz"
    link.symlink_to(real.name)
    cr.serializers.save_npz(link, snapshot(2, 8))
    assert link.is_symlink()
    assert which_snapshot(real, {2: snapshot(2, 8)}) == 2
    assert real.stat().st_mode & 0o777 == 0o640
