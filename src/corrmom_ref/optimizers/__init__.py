"""The two momentum optimizers of Goyal et al. section 3, as Chainer ships them."""

from corrmom_ref.optimizers.corrected_momentum_sgd import (
    CorrectedMomentumSGD,
    CorrectedMomentumSGDRule,
)
from corrmom_ref.optimizers.momentum_sgd import MomentumSGD, MomentumSGDRule

__all__ = ["CorrectedMomentumSGD", "CorrectedMomentumSGDRule", "MomentumSGD", "MomentumSGDRule"]
