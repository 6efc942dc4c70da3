"""Adapters of the distributed family: corrmom_ref's MultiNodeOptimizer."""

from __future__ import annotations

from typing import Any

import numpy as np

from corrmom_conformance.distributed.protocol import LocalGradient

__all__ = ["CorrmomRefAdapter", "corrmom_ref_factory"]


class CorrmomRefAdapter:
    """:class:`corrmom_ref.distributed.MultiNodeOptimizer` over NumPy parameters."""

    def __init__(self, optimizer: str, momentum: float, mpi_comm: Any) -> None:
        import corrmom_ref as cr
        from corrmom_ref import distributed

        classes = {"corrected": cr.CorrectedMomentumSGD, "uncorrected": cr.MomentumSGD}
        self._cr = cr
        self._inner = classes[optimizer](lr=0.0, momentum=momentum)
        self._optimizer = distributed.create_multi_node_optimizer(
            self._inner, distributed.create_communicator(mpi_comm)
        )
        self._params: dict[str, Any] = {}

    def setup(self, params: dict[str, np.ndarray]) -> None:
        self._params = {name: self._cr.Parameter(np.array(value)) for name, value in params.items()}
        self._optimizer.setup(self._cr.Link(**self._params))

    def step(self, local_gradient: LocalGradient, lr: float) -> None:
        self._optimizer.lr = lr
        grads = local_gradient(self.params())
        self._optimizer.update(lambda: self._cr.ScriptedLoss({self._params[k]: g for k, g in grads.items()}))

    def params(self) -> dict[str, np.ndarray]:
        return {name: np.array(p.array) for name, p in self._params.items()}


def corrmom_ref_factory(optimizer: str, momentum: float, mpi_comm: Any) -> CorrmomRefAdapter:
    """The :data:`~corrmom_conformance.distributed.protocol.DistributedFactory` of corrmom_ref."""
    return CorrmomRefAdapter(optimizer, momentum, mpi_comm)
