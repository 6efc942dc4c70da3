"""The one error a snapshot load raises for a file it cannot load: :class:`SnapshotError`.

Every loader (:func:`corrmom_ref.serializers.load_npz`, the PyTorch and optax
``load_chainer_snapshot``, :func:`corrmom_ref.distributed.load_npz`) raises it
for a damaged, truncated, hostile or mismatching file, its message naming the
file and, where one member is at fault, that member's key. It is a
``ValueError``; where the loaders raised ``KeyError`` (a missing key) or
``TypeError`` (a value of the wrong type) before it existed, the error raised
is also an instance of that class, so ``except KeyError`` and ``except
TypeError`` around a load keep working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["SnapshotError", "reading", "snapshot_error"]


class SnapshotError(ValueError):
    """A snapshot file that cannot be loaded (damaged, truncated, hostile, or not the target's).

    The message names the file and the member at fault. Raised before the
    target changes: a load that raises it leaves the target as it was.
    """


class _SnapshotKeyError(SnapshotError, KeyError):
    """A key the target needs is missing from the snapshot (also a ``KeyError``)."""

    __str__ = BaseException.__str__  # KeyError's would quote the message


class _SnapshotTypeError(SnapshotError, TypeError):
    """A stored value has the wrong type or dtype (also a ``TypeError``)."""


def snapshot_error(error: Exception, source: str) -> SnapshotError:
    """``error`` as a :class:`SnapshotError` whose message names ``source`` (the file).

    A ``KeyError`` becomes one that is also a ``KeyError``, a ``TypeError``
    one that is also a ``TypeError``; the message gets ``source`` in front
    unless it names it already.
    """
    message = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
    if source not in message:
        message = f"snapshot {source}: {message}"
    if isinstance(error, SnapshotError) and message == str(error):
        return error
    kind: type[SnapshotError] = SnapshotError
    if isinstance(error, KeyError):
        kind = _SnapshotKeyError
    elif isinstance(error, TypeError):
        kind = _SnapshotTypeError
    return kind(message)


@contextlib.contextmanager
def reading(source: str) -> Iterator[None]:
    """Turn the ``KeyError``, ``TypeError`` and ``ValueError`` raised inside into
    :class:`SnapshotError` naming ``source`` (what a target's checks of the values it reads raise)."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as error:
        converted = snapshot_error(error, source)
        if converted is error:
            raise
        raise converted from error
