"""``--impl=chainer``: real Chainer 7.8.1 (NumPy < 2), no mocks."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from corrmom_conformance.adapters import _links
from corrmom_conformance.adapters.chainer_style import API_CAPABILITIES, ChainerStyleOptimizer, Flavour


class ChainerAdapter:
    """``chainer.optimizers.CorrectedMomentumSGD`` on NumPy."""

    name = "chainer"
    backend = "numpy"
    state_sign = -1.0
    capabilities = API_CAPABILITIES | {"chainer_rounding"}

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # Chainer 7.8.1's import touches numpy.distutils and distutils' msvccompiler, both
            # deprecated: noise about Chainer's packaging printed above every run, not a finding.
            warnings.filterwarnings(
                "ignore", category=DeprecationWarning, module=r"(chainer|numpy|setuptools|distutils)\b"
            )
            import chainer

        self._chainer = chainer
        self.version = chainer.__version__

    def flavour(self) -> Flavour:
        chainer = self._chainer
        F = chainer.functions  # noqa: N806 - Chainer's conventional name

        def make_link(children: dict[str, Any]) -> Any:
            link = (
                chainer.Chain()
                if any(isinstance(c, chainer.Link) for c in children.values())
                else chainer.Link()
            )
            with link.init_scope():
                for name, child in children.items():
                    setattr(link, name, child)
            return link

        def scaled_loss(pairs: list[tuple[Any, np.ndarray]]) -> Any:
            def lossfun() -> Any:
                terms = [F.sum(param * g) for param, g in pairs]
                if not terms:
                    return chainer.Variable(np.zeros((), np.float32))
                return F.sum(F.stack([F.cast(t, np.float32) for t in terms]))

            return lossfun

        return Flavour(
            make_link=lambda arrays: _links.build(_links.nest(arrays), chainer.Parameter, make_link),
            make_optimizer=lambda lr, m: chainer.optimizers.CorrectedMomentumSGD(lr=lr, momentum=m),
            scaled_loss=scaled_loss,
            save_npz=chainer.serializers.save_npz,
            load_npz=chainer.serializers.load_npz,
            to_native=lambda a: np.array(a, copy=True),
            to_numpy=lambda x: np.array(x, copy=True),
            optimizer_hooks=chainer.optimizer_hooks,
        )

    def create(self, params: Any, *, lr: float, momentum: float) -> ChainerStyleOptimizer:
        return ChainerStyleOptimizer(self.flavour(), params, lr, momentum)


def make_adapter() -> ChainerAdapter:
    """Factory for ``--impl=chainer``."""
    return ChainerAdapter()
