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
from corrmom_ref.distributed.buckets import Bucket, group_into_buckets

__all__ = ["FingerprintMismatchError", "MpiCommunicator", "create_communicator"]


#: ``c * c`` for every byte ``c``.
_SQUARES = tuple(c * c for c in range(256))


class FingerprintMismatchError(RuntimeError):
    """Raised on every rank by ``MpiCommunicator.mean_grads`` when the ranks' fingerprints differ."""


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
        #: Per (array type, dtype): whether sums of ``size`` squared bytes are exact in it.
        self._exact_sums: dict[tuple[Any, Any], bool] = {}
        #: The last fingerprint as it travels (see _carried).
        self._carried_fingerprint: _CarriedFingerprint | None = None

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
        from corrmom_ref.distributed import mpi_buffers

        for bucket in group_into_buckets(link.params(), lambda p: p.array):
            packed = bucket.pack([p.array for p in bucket.members])
            flat = mpi_buffers.bcast(
                self.mpi_comm, packed, root, self._waiter("the parameter broadcast of setup()")
            )
            for param, value in zip(bucket.members, bucket.unpack(flat), strict=True):
                _assign(param, value)

    def mean_grads(self, link: Any, nonfinite: bool | None = None, fingerprint: bytes = b"") -> bool | None:
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
            fingerprint: A few bytes every rank must agree on (the same
                length on every rank), e.g.
                :meth:`~corrmom_ref.distributed.drift.DriftCheck.fingerprint`.
                Each byte :math:`c` and :math:`c^2` travel in the first
                bucket, and the ranks agree exactly when the sums are
                :math:`k c` and :math:`k c^2` for this rank's every byte
                (then the bytes have no variance over the ranks);
                where that bucket's dtype cannot hold those sums exactly
                (float16, or float32 beyond 258 ranks) the bytes go in a small
                allreduce of their own.

        Returns:
            ``None`` if ``nonfinite`` is ``None``, else whether any rank said
            ``True``.

        Raises:
            RuntimeError: ``FingerprintMismatchError``, on every rank, if the
                fingerprints differ; then no gradient has changed.
        """
        from corrmom_ref.distributed import mpi_buffers

        buckets = group_into_buckets(link.params(), lambda p: p.grad)
        carried = None
        if fingerprint:
            carried = self._carried(fingerprint, buckets[0]) if buckets else None
            if carried is None or not carried.exact:
                self._agree_on_bytes(fingerprint)
                carried = None
        agreed = None
        for index, bucket in enumerate(buckets):
            extra: tuple[float | int, ...] = ()
            if index == 0:
                verdict = None if nonfinite is None else (1.0 if nonfinite else 0.0)
                if carried is not None:
                    extra = carried.extra(verdict)
                elif verdict is not None:
                    extra = (verdict,)
            key = bucket.key(len(extra))
            if index == 0 and carried is not None:
                flat = carried.pack(bucket, verdict, self._buffers.get(key))
            else:
                flat = bucket.pack([p.grad for p in bucket.members], extra, out=self._buffers.get(key))
            total = mpi_buffers.allreduce_sum(
                self.mpi_comm, flat, self._waiter("the gradient allreduce of update()")
            )
            if index == 0 and carried is not None and not carried.agrees(total):
                # before the division by k, before any gradient is written
                raise FingerprintMismatchError("the ranks' fingerprints differ")
            total /= self.size  # in place where the backend allows it
            if is_writeable_array(total):
                self._buffers[key] = total
            for param, grad in zip(bucket.members, bucket.unpack(total), strict=True):
                _assign_grad(param, grad)
            if nonfinite is not None and index == 0:
                agreed = bool(bucket.extras(total)[0] > 0)  # the mean of 0/1 verdicts
        if nonfinite is not None and agreed is None:  # a model without parameters
            agreed = self.any(nonfinite)
        return agreed

    def _sums_exact(self, like: Any) -> bool:
        """Whether ``like``'s dtype holds every sum of ``k`` squared bytes exactly (integers up to 2/eps)."""
        key = (type(like), like.dtype)
        exact = self._exact_sums.get(key)
        if exact is None:
            eps = float(namespace_of(like).finfo(like.dtype).eps)
            exact = self._exact_sums[key] = self.size * 255 * 255 * eps <= 2.0
        return exact

    def _carried(self, fingerprint: bytes, bucket: Bucket) -> _CarriedFingerprint:
        """``fingerprint`` as the first bucket, ``bucket``, carries it; cached while both stay alike."""
        carried = self._carried_fingerprint
        kind = bucket.kind
        if carried is None or carried.fingerprint is not fingerprint or carried.kind != kind:
            exact = self._sums_exact(bucket.members[0].grad)
            carried = self._carried_fingerprint = _CarriedFingerprint(fingerprint, self.size, kind, exact)
        return carried

    def _agree_on_bytes(self, data: bytes) -> None:
        """Raise :class:`FingerprintMismatchError` on every rank unless every rank passed the same ``data`` (one allreduce)."""
        import numpy as np
        from mpi4py import MPI

        mine = np.frombuffer(data, dtype=np.uint8).astype(np.int16)
        both = np.concatenate([mine, -mine])  # max of c and of -c: equal everywhere iff max == min
        self.exit_watch.wait(
            self.mpi_comm.Iallreduce(MPI.IN_PLACE, both, op=MPI.MAX), "the drift check of update()"
        )
        if not np.array_equal(both[: mine.shape[0]], -both[mine.shape[0] :]):
            raise FingerprintMismatchError("the ranks' fingerprints differ")

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


class _CarriedFingerprint:
    r"""A fingerprint's terms in the first gradient bucket, and the sums that mean every rank had the same.

    The terms are each byte :math:`c_i`, then each square :math:`c_i^2`,
    after the verdict slot if there is one. If every rank adds the same
    bytes, the sums are :math:`k` times this rank's terms; conversely sums
    :math:`S = k c` and :math:`Q = k c^2` leave the ranks' bytes no variance
    (:math:`Q/k - (S/k)^2 = 0`), so they are all :math:`c`. In a NumPy
    bucket's reused buffer the terms are written, and the sums compared, as
    raw bytes through views of its tail made once (small integers, exact, so
    equal sums have equal bytes).

    Args:
        fingerprint: The bytes.
        ranks: :math:`k`.
        kind: The first bucket's array type, dtype and device.
        exact: Whether that dtype holds the sums exactly (else nothing is carried).
    """

    def __init__(self, fingerprint: bytes, ranks: int, kind: tuple[Any, ...], exact: bool) -> None:
        self.fingerprint = fingerprint
        self.kind = kind
        self.exact = exact
        self.terms = (*fingerprint, *map(_SQUARES.__getitem__, fingerprint))
        self.expected = [float(ranks * c) for c in self.terms]
        self._numpy = exact and kind[0].__module__ == "numpy"
        #: The buffer the views below look at, the bytes of its extras and of its last ``len(terms)`` elements.
        self._buffer: Any = None
        self._tail = self._sums = memoryview(b"")
        #: Per verdict (``None``, 0.0, 1.0): the extras' bytes; the expected sums' bytes.
        self._tail_bytes: dict[float | None, bytes] = {}
        self._expected_bytes = b""
        if self._numpy:
            import numpy as np

            dtype = kind[1]
            self._tail_bytes = {v: np.array(self.extra(v), dtype=dtype).tobytes() for v in (None, 0.0, 1.0)}
            self._expected_bytes = np.array(self.expected, dtype=dtype).tobytes()

    def extra(self, verdict: float | None) -> tuple[float | int, ...]:
        """What the first bucket carries after the gradients: the verdict (if any), then the terms."""
        return self.terms if verdict is None else (verdict, *self.terms)

    def pack(self, bucket: Bucket, verdict: float | None, out: Any) -> Any:
        """The first bucket's flat vector (into ``out`` if given, see :meth:`Bucket.pack`) with these extras."""
        grads = [p.grad for p in bucket.members]
        if out is not None and out is self._buffer:
            flat = bucket.pack(grads, (), out=out)
            self._tail[:] = self._tail_bytes[verdict]  # last: still in cache when the sums are read
            return flat
        flat = bucket.pack(grads, self.extra(verdict), out=out)
        if self._numpy:  # NumPy's allreduce sums in this buffer and the communicator keeps it
            raw = memoryview(flat).cast("B")
            size = raw.nbytes
            self._buffer = flat
            self._tail = raw[size - len(self._tail_bytes[verdict]) :]
            self._sums = raw[size - len(self._expected_bytes) :]
        return flat

    def agrees(self, total: Any) -> bool:
        """Whether the summed first bucket ``total`` ends with the expected sums."""
        if total is self._buffer:
            return self._sums.tobytes() == self._expected_bytes
        size = total.shape[0]
        sums = total[size - len(self.terms) : size]
        tolist = getattr(sums, "tolist", None)  # NumPy, PyTorch, CuPy, JAX
        if tolist is None:
            from corrmom_ref.serializers._host import to_numpy

            tolist = to_numpy(sums).tolist
        return bool(tolist() == self.expected)  # sums of small integers: exact


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
