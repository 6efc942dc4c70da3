"""One rank's failure ends the whole MPI job, with that rank's message, instead of hanging it.

A data-parallel job is a team: when one rank stops, the others wait for it in
their next collective, forever. Two ways a rank can stop are covered here.

* **An uncaught exception.** :func:`install_excepthook` chains
  ``sys.excepthook`` with one that prints the traceback as usual, names
  the rank, and calls ``MPI_Abort`` on ``COMM_WORLD``: ``mpiexec`` then ends
  every rank, with a non-zero exit status. (``python -m mpi4py`` aborts the
  same way at exit; the hook does it for plain ``python train.py`` too.)
* **An early exit** (the script ends, or calls ``sys.exit(0)``, on one rank
  only). Exiting raises nothing, so each communicator keeps an
  :class:`ExitWatch`: at exit every rank sends an exit notice to its peers
  and then waits for theirs (so a normal end, where all ranks exit, needs no
  timeout however late each rank finishes). The communicator's own
  collectives are non-blocking requests waited on by :meth:`ExitWatch.wait`,
  which also looks at the notices: a rank that finds a peer gone while it
  waits for that peer aborts the job with a message naming the peer and the
  operation.

What stays true: with no failure every collective returns the same result
as its blocking form, and a job whose ranks all end normally exits with
status 0. Collectives a user makes directly on an ``mpi4py`` communicator
are not watched (a rank waiting in one of those for a rank that has exited
still waits).
"""

from __future__ import annotations

import atexit
import sys
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["ExitWatch", "abort", "install_excepthook", "watch"]

#: The tag of exit notices, on the watch's private duplicate communicator.
_EXIT_TAG = 7
#: Seconds of waiting after which :meth:`ExitWatch.wait` sleeps (:data:`_SLEEP_SECONDS`) every 64 tests.
_SPIN_SECONDS = 0.05
_SLEEP_SECONDS = 0.0005
#: Seconds between printing the reason and MPI_Abort, for mpiexec to forward the output first.
_OUTPUT_SECONDS = 0.2

_watches: list[ExitWatch] = []
#: Set by :func:`abort`: this rank sends no exit notices (its peers are being ended, not left behind).
_aborting = False
_previous_excepthook: Callable[..., Any] | None = None


def abort(message: str) -> None:
    """Print ``message`` to stderr and end every rank of the job (``MPI_Abort``, status 1).

    Waits 0.2 s between the two: ``mpiexec`` (MPICH's hydra) tears the job
    down on ``MPI_Abort`` and, without the pause, dropped the message in 5
    of 6 trials.
    """
    global _aborting
    from mpi4py import MPI

    _aborting = True
    rank = MPI.COMM_WORLD.Get_rank()
    sys.stdout.flush()
    print(
        f"corrmom_ref.distributed, rank {rank}: {message}; aborting the MPI job", file=sys.stderr, flush=True
    )
    time.sleep(_OUTPUT_SECONDS)
    MPI.COMM_WORLD.Abort(1)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    try:
        (_previous_excepthook or sys.__excepthook__)(kind, value, tb)
    except BaseException:  # a broken hook must not stop the abort
        traceback.print_exception(kind, value, tb)
    from mpi4py import MPI

    size = MPI.COMM_WORLD.Get_size()
    abort(
        f"uncaught {kind.__name__} (traceback above) on this rank of {size}, so the others would wait for it"
    )


def install_excepthook() -> None:
    """Make an uncaught exception on any rank abort the whole job (once per process).

    Not installed in an interactive session (there an uncaught exception
    returns to the prompt), nor in a job of one rank.
    """
    global _previous_excepthook
    from mpi4py import MPI

    if sys.excepthook is _excepthook or MPI.COMM_WORLD.Get_size() < 2:
        return
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook


class ExitWatch:
    """Exit notices among the ranks of one communicator (see the module docstring).

    Creating one is collective over ``mpi_comm`` (it duplicates it, so the
    notices never meet the user's messages); every rank posts one receive
    per peer at once.

    Args:
        mpi_comm: The ``mpi4py`` intracommunicator whose ranks to watch.
    """

    def __init__(self, mpi_comm: Any) -> None:
        import numpy as np
        from mpi4py import MPI

        self.group = mpi_comm.Get_group()
        self.comm = mpi_comm.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._inbox = np.zeros(self.size, dtype=np.int64)
        #: Sent at exit: how many collectives of this watch this rank completed.
        self._outbox = np.zeros(1, dtype=np.int64)
        self._pending: dict[int, Any] = {
            peer: self.comm.Irecv([self._inbox[peer : peer + 1], MPI.INT64_T], source=peer, tag=_EXIT_TAG)
            for peer in range(self.size)
            if peer != self.rank
        }
        #: Peers whose exit notice has arrived.
        self.exited: set[int] = set()
        #: Collectives completed through :meth:`wait` (every rank makes the same ones, in order).
        self.completed = 0

    def poll(self) -> set[int]:
        """The peers known to have exited (their notices tested now)."""
        for peer, request in list(self._pending.items()):
            if request.Test():
                del self._pending[peer]
                self.exited.add(peer)
        return self.exited

    def wait(self, request: Any, what: str) -> None:
        """Complete ``request`` (a collective of this communicator), or abort if a peer has exited.

        Tests ``request`` in a loop (which also progresses MPI); every 64
        tests it tests the exit notices, and once the wait has lasted 50 ms
        it also sleeps 0.5 ms there (so a long wait for a slow rank costs
        little CPU).
        """
        start = time.monotonic()
        spins = 0
        while not request.Test():
            spins += 1
            if spins % 64:
                continue
            missing = self.missing()
            if missing:
                gone = ", ".join(str(p) for p in missing)
                abort(
                    f"rank{'s' if len(missing) > 1 else ''} {gone} of this communicator ended (its script returned or called sys.exit) "
                    f"while rank {self.rank} waits for it in {what}"
                )
            if time.monotonic() - start > _SPIN_SECONDS:
                time.sleep(_SLEEP_SECONDS)
        self.completed += 1

    def missing(self) -> list[int]:
        """Exited peers that never joined the collective being waited for.

        A peer's exit notice carries how many collectives it completed: one
        that completed more than this rank has took part in the current one
        and left afterwards (a rank may finish its last step and exit while
        a slower rank still waits for that step's collective to complete).
        """
        return sorted(peer for peer in self.poll() if self._inbox[peer] <= self.completed)

    def _notify(self) -> list[Any]:
        self._outbox[0] = self.completed
        return [
            self.comm.Isend(self._outbox, dest=peer, tag=_EXIT_TAG)
            for peer in range(self.size)
            if peer != self.rank
        ]


def watch(mpi_comm: Any) -> ExitWatch:
    """The :class:`ExitWatch` of ``mpi_comm``'s group of ranks, made once (collectively) and reused.

    Also installs the exit handshake (``atexit``) and the excepthook.
    """
    from mpi4py import MPI

    group = mpi_comm.Get_group()
    try:
        for existing in _watches:
            if MPI.Group.Compare(existing.group, group) == MPI.IDENT:
                return existing
    finally:
        group.Free()
    if not _watches:
        atexit.register(_exit_handshake)
    install_excepthook()
    new = ExitWatch(mpi_comm)
    _watches.append(new)
    return new


def _exit_handshake() -> None:
    """At exit: tell every watched peer, then wait until each has said the same."""
    from mpi4py import MPI

    if _aborting or MPI.Is_finalized():
        return
    sends = [request for w in _watches for request in w._notify()]
    MPI.Request.Waitall(sends + [request for w in _watches for request in w._pending.values()])
