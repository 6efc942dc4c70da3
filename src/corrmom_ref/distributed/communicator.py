r"""The MPI communicator: parameter broadcast, gradient averaging, agreement on flags.

Gradient averaging is one ``MPI_Allreduce`` per bucket (one bucket per
backend, dtype and device; usually one in all) of the flat vector of all
gradients:

.. math::

    \bar g = \frac{1}{k} \operatorname{allreduce}_{+}\bigl(g^{(1)}, \dots, g^{(k)}\bigr).

The sum is computed by MPI in a fixed order for a fixed number of ranks, and
the division by :math:`k` is the same on every rank, so every rank gets the
same bits.

Every collective here is a non-blocking MPI request completed by the
communicator's :class:`~corrmom_ref.distributed.failfast.ExitWatch`: a rank
waiting for a peer that has exited aborts the job instead of waiting forever
(:mod:`corrmom_ref.distributed.failfast`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import is_writeable_array

from corrmom_ref._namespace import namespace_of
from corrmom_ref.distributed import failfast
from corrmom_ref.distributed.buckets import group_into_buckets

__all__ = ["MpiCommunicator", "create_communicator"]


class MpiCommunicator:
    """Collective operations on a link's parameters over an mpi4py communicator.

    Creating one is collective over ``mpi_comm`` (the first one over a group
    of ranks duplicates it for exit notices) and installs the excepthook of
    :func:`~corrmom_ref.distributed.failfast.install_excepthook`: from then
    on an uncaught exception or an early exit on one rank ends the job.

    Args:
        mpi_comm: An ``mpi4py.MPI.Comm`` (intracommunicator); default
            ``MPI.COMM_WORLD``.
    """

    def __init__(self, mpi_comm: Any = None) -> None:
        if mpi_comm is None:
            from mpi4py import MPI

            mpi_comm = MPI.COMM_WORLD
        self.mpi_comm = mpi_comm
        #: Exit notices of the other ranks; completes this communicator's collectives.
        self.exit_watch = failfast.watch(mpi_comm)
        #: The flat gradient buffer of each bucket layout, reused every step.
        self._buffers: dict[tuple[Any, ...], Any] = {}

    @property
    def rank(self) -> int:
        """This process's rank."""
        return int(self.mpi_comm.Get_rank())

    @property
    def size(self) -> int:
        """The number of ranks :math:`k`."""
        return int(self.mpi_comm.Get_size())

    def bcast_data(self, link: Any, root: int = 0) -> None:
        """Give every parameter of ``link`` ``root``'s value: one ``MPI_Bcast`` per bucket.

        Writable arrays are overwritten in place (references to them stay
        valid); read-only ones (JAX) are replaced.
        """
        from corrmom_ref._backends import mpi_buffers

        for bucket in group_into_buckets(link.params(), lambda p: p.array):
            packed = bucket.pack([p.array for p in bucket.members])
            flat = mpi_buffers.bcast(
                self.mpi_comm, packed, root, self._waiter("the parameter broadcast of setup()")
            )
            for param, value in zip(bucket.members, bucket.unpack(flat), strict=True):
                _assign(param, value)

    def mean_grads(self, link: Any, nonfinite: bool | None = None) -> bool | None:
        r"""Replace every gradient by its mean over the ranks; one allreduce per bucket.

        Every parameter must have a gradient (call
        ``reallocate_cleared_grads()`` first), so all ranks pack the same
        buckets.

        Args:
            link: The model.
            nonfinite: This rank's verdict "some gradient is not finite", or
                ``None`` to agree on nothing. The verdict travels as one more
                element of the first bucket (0 or 1, summed exactly), so the
                agreement costs no extra message.

        Returns:
            ``None`` if ``nonfinite`` is ``None``, else whether any rank said
            ``True``.
        """
        from corrmom_ref._backends import mpi_buffers

        buckets = group_into_buckets(link.params(), lambda p: p.grad)
        agreed = None
        for index, bucket in enumerate(buckets):
            extra = (1.0 if nonfinite else 0.0,) if nonfinite is not None and index == 0 else ()
            key = bucket.key(len(extra))
            flat = bucket.pack([p.grad for p in bucket.members], extra, out=self._buffers.get(key))
            total = mpi_buffers.allreduce_sum(
                self.mpi_comm, flat, self._waiter("the gradient allreduce of update()")
            )
            total /= self.size  # in place where the backend allows it
            if is_writeable_array(total):
                self._buffers[key] = total
            for param, grad in zip(bucket.members, bucket.unpack(total), strict=True):
                _assign_grad(param, grad)
            if extra:
                agreed = bool(bucket.extras(total)[0] > 0)  # the mean of 0/1 verdicts
        if nonfinite is not None and agreed is None:  # a model without parameters
            agreed = self.any(nonfinite)
        return agreed

    def _waiter(self, what: str) -> Callable[[Any], None]:
        def wait(request: Any) -> None:
            self.exit_watch.wait(request, what)

        return wait

    def any(self, flag: bool, what: str = "an agreement on a flag") -> bool:
        """Logical OR of ``flag`` over the ranks (``what`` names the wait in an abort message)."""
        import numpy as np
        from mpi4py import MPI

        value = np.array([1 if flag else 0], dtype=np.int32)
        self.exit_watch.wait(self.mpi_comm.Iallreduce(MPI.IN_PLACE, value, op=MPI.MAX), what)
        return bool(value[0])

    def bcast_bytes(self, data: bytes | None, root: int = 0, what: str = "a broadcast") -> bytes:
        """``root``'s ``data`` on every rank (other ranks pass ``None``): its length, then its bytes."""
        import numpy as np

        length = np.array([len(data) if self.rank == root and data is not None else 0], dtype=np.int64)
        self.exit_watch.wait(self.mpi_comm.Ibcast(length, root=root), what)
        if self.rank == root and data is not None:
            buffer = np.frombuffer(data, dtype=np.uint8).copy()
        else:
            buffer = np.empty(int(length[0]), dtype=np.uint8)
        self.exit_watch.wait(self.mpi_comm.Ibcast(buffer, root=root), what)
        return buffer.tobytes()

    def allgather_bytes(self, data: bytes, what: str = "an allgather") -> list[bytes]:
        """Every rank's ``data``, in rank order, on every rank: the lengths, then the bytes."""
        import numpy as np
        from mpi4py import MPI

        lengths = np.zeros(self.size, dtype=np.int64)
        mine = np.array([len(data)], dtype=np.int64)
        self.exit_watch.wait(self.mpi_comm.Iallgather(mine, lengths), what)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        gathered = np.empty(int(offsets[-1]), dtype=np.uint8)
        send = np.frombuffer(data, dtype=np.uint8).copy()
        counts, displs = [int(n) for n in lengths], [int(o) for o in offsets[:-1]]
        self.exit_watch.wait(self.mpi_comm.Iallgatherv(send, [gathered, counts, displs, MPI.BYTE]), what)
        return [gathered[offsets[r] : offsets[r + 1]].tobytes() for r in range(self.size)]

    def bcast_buffer(self, buffer: Any, root: int = 0, what: str = "a broadcast") -> Any:
        """``root``'s writable uint8 NumPy ``buffer`` on every rank (other ranks pass ``None``):
        its length, then its bytes, received into a new array; ``root``'s is sent as it is (no copy)."""
        import numpy as np

        length = np.array([len(buffer) if self.rank == root else 0], dtype=np.int64)
        self.exit_watch.wait(self.mpi_comm.Ibcast(length, root=root), what)
        if self.rank != root:
            buffer = np.empty(int(length[0]), dtype=np.uint8)
        self.exit_watch.wait(self.mpi_comm.Ibcast(buffer, root=root), what)
        return buffer

    def barrier(self, what: str = "a barrier") -> None:
        """Wait for all ranks."""
        self.exit_watch.wait(self.mpi_comm.Ibarrier(), what)


def _assign_grad(param: Any, value: Any) -> None:
    """Copy into the gradient's own memory (the flat buffer is reused next step)."""
    if is_writeable_array(param.grad):
        param.grad[...] = value
    else:
        param.grad = namespace_of(value).asarray(value, copy=True)


def _assign(param: Any, value: Any) -> None:
    if is_writeable_array(param.array):
        param.array[...] = value
    else:
        param.array = namespace_of(param.array).asarray(value, copy=True)


def create_communicator(mpi_comm: Any = None) -> MpiCommunicator:
    """A :class:`MpiCommunicator` over ``mpi_comm`` (default ``MPI.COMM_WORLD``)."""
    return MpiCommunicator(mpi_comm)
