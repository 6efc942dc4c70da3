"""``--impl=ref``: corrmom_ref's CorrectedMomentumSGD on any array backend."""

from __future__ import annotations

from typing import Any

from conformance.adapters import _links
from conformance.adapters.chainer_style import ALL_CAPABILITIES, ChainerStyleOptimizer, Flavour
from conformance.backends import get_backend


class ReferenceAdapter:
    """The reference implementation, on one backend."""

    name = "ref"
    state_sign = -1.0

    def __init__(self, backend: str = "numpy", optimizer_class: Any = None) -> None:
        import corrmom_ref as cr

        self._cr = cr
        self._backend = get_backend(backend)
        self._optimizer_class = optimizer_class or cr.CorrectedMomentumSGD
        self.version = cr.__version__
        self.backend = self._backend.name
        caps = set(ALL_CAPABILITIES)
        if not self._backend.has_float16:
            caps -= {"float16", "fp32_master"}
        self.capabilities = frozenset(caps)

    def flavour(self) -> Flavour:
        cr = self._cr
        return Flavour(
            make_link=lambda arrays: _links.build(_links.nest(arrays), cr.Parameter, lambda c: cr.Link(**c)),
            make_optimizer=lambda lr, m: self._optimizer_class(lr=lr, momentum=m),
            scaled_loss=lambda pairs: lambda: cr.ScriptedLoss(dict(pairs)),
            save_npz=cr.serializers.save_npz,
            load_npz=cr.serializers.load_npz,
            to_native=self._backend.to_native,
            to_numpy=self._backend.to_numpy,
        )

    def create(self, params: Any, *, lr: float, momentum: float) -> ChainerStyleOptimizer:
        return ChainerStyleOptimizer(self.flavour(), params, lr, momentum)


def make_adapter(backend: str = "numpy") -> ReferenceAdapter:
    """Factory for ``--impl=ref`` (``--backend`` picks the array library)."""
    return ReferenceAdapter(backend)
