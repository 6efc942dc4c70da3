"""Conformance family for data-parallel implementations of (corrected) momentum SGD.

One property, for any implementation that averages gradients over MPI ranks:
:math:`k` ranks that each take a minibatch of :math:`b` examples follow the
trajectory of one process that takes all :math:`kb` (eq. (9) or eq. (10) of
Goyal et al., computed here by an independent NumPy oracle), and all ranks
hold bitwise-identical parameters after every step.

An implementation plugs in through a :class:`~corrmom_conformance.distributed.protocol.DistributedAdapter`
factory; ours is :func:`~corrmom_conformance.distributed.adapters.corrmom_ref_factory`.
Run :func:`~corrmom_conformance.distributed.equivalence.check_data_parallel_equivalence`
under ``mpiexec -n K`` (see ``tests/distributed/test_conformance_family.py``).
"""

from corrmom_conformance.distributed.equivalence import (
    EquivalenceReport,
    LeastSquares,
    check_data_parallel_equivalence,
    oracle_trajectory,
)
from corrmom_conformance.distributed.protocol import DistributedAdapter, DistributedFactory

__all__ = [
    "DistributedAdapter",
    "DistributedFactory",
    "EquivalenceReport",
    "LeastSquares",
    "check_data_parallel_equivalence",
    "oracle_trajectory",
]
