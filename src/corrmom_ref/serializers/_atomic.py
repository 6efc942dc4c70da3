"""Replacing a file atomically: readers see the old content or the new, never a mix.

:func:`replace_file` writes to a new temporary file in the target's directory
(so that the final rename stays on one filesystem), flushes it and
syncs it to disk (``fsync``), renames it over the target with :func:`os.replace` (atomic
on POSIX and Windows), then syncs the directory so the rename itself
survives a power loss. Any error before the rename (a full disk, a file-size
limit, an exception from the writer, ``KeyboardInterrupt``) removes the
temporary file and leaves the target untouched. Only SIGKILL or a power loss
during the write can leave a temporary file behind; it is named
``.<target name>.<random>.tmp`` and may be deleted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["replace_file"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new file beside the target; created with mode 0o666 so the umask applies,
    as ``open(path, "wb")`` would for a new file."""
    for _ in range(100):
        path = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(path, _FLAGS, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(
        errno.EEXIST, "no free temporary file name", os.path.join(directory, f".{name}.*.tmp")
    )


def _fsync_directory(directory: str) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:  # some filesystems cannot fsync a directory
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def replace_file(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file, then put that file in place of ``path``.

    A symbolic link at ``path`` is kept and the file it points to replaced.
    An existing target's permission bits are copied to the new file (its
    owner and ACLs are not). See the module docstring for what stays true.
    """
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    fd, temporary = _create_temporary(directory, name)
    try:
        with os.fdopen(fd, "wb") as file:
            if mode is not None:
                os.chmod(temporary, mode)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
