"""The adapter protocol a data-parallel implementation provides to this family.

Everything crosses the boundary as NumPy arrays on the host, so adapters for
other frameworks (ChainerMN, Horovod, torch.distributed) need no corrmom_ref
types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

__all__ = ["DistributedAdapter", "DistributedFactory", "LocalGradient"]

#: Given the current parameters, this rank's mean gradient over its own minibatch.
LocalGradient = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class DistributedAdapter(Protocol):
    """One rank's view of a data-parallel optimizer."""

    def setup(self, params: dict[str, np.ndarray]) -> None:
        """Create the model with these initial values (rank 0's must win)."""

    def step(self, local_gradient: LocalGradient, lr: float) -> None:
        """One step at learning rate ``lr`` with this rank's gradient, averaged over ranks."""

    def params(self) -> dict[str, np.ndarray]:
        """The current parameters (host copies)."""


#: ``factory(optimizer, momentum, mpi_comm)``: an adapter for ``optimizer``
#: (``'corrected'``: eq. (9); ``'uncorrected'``: eq. (10)) over ``mpi_comm``.
DistributedFactory = Callable[[str, float, Any], DistributedAdapter]
