"""``--impl=ref``: corrmom_ref's CorrectedMomentumSGD on any array backend."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from corrmom_conformance.adapters import _links
from corrmom_conformance.adapters.chainer_style import API_CAPABILITIES, ChainerStyleOptimizer, Flavour
from corrmom_conformance.backends import get_backend


class ReferenceAdapter:
    """The reference implementation, on one backend.

    Args:
        backend: The array library (``--backend``).
        optimizer_class: The optimizer to check (mutants in the meta-tests).
        fast_paths: ``False`` for the generic variant: every step runs the
            Array API arithmetic, no native kernel.
    """

    name = "ref"
    state_sign = -1.0
    #: Declares ``generic_variant`` (:class:`~corrmom_conformance.protocol.SupportsGenericVariant`):
    #: 1 where the backend's native kernel fuses products, else 0 (set per backend).
    fast_path_roundings: float

    def __init__(self, backend: str = "numpy", optimizer_class: Any = None, fast_paths: bool = True) -> None:
        import corrmom_ref as cr
        from corrmom_ref.fast_paths import kernel_roundings

        self._cr = cr
        self._backend_key = backend
        self._backend = get_backend(backend)
        self._optimizer_class = optimizer_class or cr.CorrectedMomentumSGD
        self._fast_paths = fast_paths
        self.version = cr.__version__
        self.backend = self._backend.name if fast_paths else f"{self._backend.name} (generic)"
        caps = set(API_CAPABILITIES) | {"generic_variant"}
        if not self._backend.has_float16:
            caps -= {"float16", "fp32_master"}
        self.capabilities = frozenset(caps)
        # A native kernel that fuses each product into a multiply-add is one rounding
        # apart from the generic step per product; without one (or with NumPy's
        # Numba loop, which rounds as the generic step does) the two agree bitwise.
        xp = array_namespace(self._backend.to_native(np.zeros(1, np.float32)))
        self.fast_path_roundings = float(kernel_roundings(xp))
        # On NumPy the generic step is Chainer's CPU code, operation for operation
        # (and the Numba loop rounds as it does): bitwise Chainer's numbers.
        if backend in ("numpy", "numpy1", "numba") and self.fast_path_roundings == 0:
            self.capabilities |= {"chainer_rounding"}

    def generic_variant(self) -> ReferenceAdapter:
        """The reference on the same backend with its native fast paths off."""
        return ReferenceAdapter(self._backend_key, self._optimizer_class, fast_paths=False)

    def flavour(self) -> Flavour:
        from corrmom_ref.fast_paths import use_fast_paths

        cr = self._cr
        return Flavour(
            make_link=lambda arrays: _links.build(_links.nest(arrays), cr.Parameter, lambda c: cr.Link(**c)),
            make_optimizer=lambda lr, m: self._optimizer_class(lr=lr, momentum=m),
            scaled_loss=lambda pairs: lambda: cr.ScriptedLoss(dict(pairs)),
            save_npz=cr.serializers.save_npz,
            load_npz=cr.serializers.load_npz,
            to_native=self._backend.to_native,
            to_numpy=self._backend.to_numpy,
            dispatch=(lambda: nullcontext()) if self._fast_paths else (lambda: use_fast_paths(False)),
            optimizer_hooks=cr.optimizer_hooks,
        )

    def create(self, params: Any, *, lr: float, momentum: float) -> ChainerStyleOptimizer:
        return ChainerStyleOptimizer(self.flavour(), params, lr, momentum)


def make_adapter(backend: str = "numpy") -> ReferenceAdapter:
    """Factory for ``--impl=ref`` (``--backend`` picks the array library)."""
    return ReferenceAdapter(backend)
