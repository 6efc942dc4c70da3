"""ExitWatch.wait aborts only for a peer that left before the collective it waits for.

Serial, with stand-ins for the MPI requests: a peer that completed the current
collective and then exited (a fast rank after its last step) is no reason to
abort a slower rank still waiting for that collective to complete; a peer that
exited before joining it is.
"""

from __future__ import annotations

import numpy as np
import pytest

from corrmom_ref.distributed import failfast


class Request:
    """Completes after ``tests`` calls of ``Test``."""

    def __init__(self, tests: int) -> None:
        self.left = tests

    def Test(self) -> bool:  # noqa: N802 (mpi4py's name)
        self.left -= 1
        return self.left < 0


def watch_with_exited_peer(peer_completed: int, completed: int) -> failfast.ExitWatch:
    watch = failfast.ExitWatch.__new__(failfast.ExitWatch)
    watch.rank, watch.size = 0, 3
    watch._inbox = np.zeros(3, dtype=np.int64)
    watch._inbox[2] = peer_completed
    watch._pending = {1: Request(10**9), 2: Request(0)}  # rank 2's notice has arrived
    watch.exited = set()
    watch.completed = completed
    return watch


@pytest.fixture
def aborts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []

    def abort(message: str) -> None:
        said.append(message)
        raise SystemExit(1)

    monkeypatch.setattr(failfast, "abort", abort)
    return said


def test_a_peer_that_took_part_and_left_does_not_abort_the_wait(aborts: list[str]) -> None:
    watch = watch_with_exited_peer(peer_completed=5, completed=4)  # rank 2 finished collective no. 5
    watch.wait(Request(1000), "the gradient allreduce of update()")
    assert aborts == [] and watch.completed == 5


def test_a_peer_that_left_before_the_collective_aborts_naming_it(aborts: list[str]) -> None:
    watch = watch_with_exited_peer(peer_completed=4, completed=4)  # rank 2 never joined no. 5
    with pytest.raises(SystemExit):
        watch.wait(Request(1000), "the gradient allreduce of update()")
    assert len(aborts) == 1 and "rank 2 of this communicator ended" in aborts[0]
    assert "gradient allreduce" in aborts[0]
