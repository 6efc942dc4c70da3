"""corrmom_ref: Chainer's CorrectedMomentumSGD and its machinery on the Array API.

The reference implementation of momentum SGD with momentum correction
(Goyal et al. 2017, section 3) as Chainer 7.8.1 ships it, written only against
the Python Array API standard, so the same code runs on NumPy, CuPy, PyTorch,
JAX, array-api-strict and Dask.
"""

from corrmom_ref import optimizer_hooks, serializers
from corrmom_ref.fast_paths import use_fast_paths
from corrmom_ref.hyperparameter import Hyperparameter, HyperparameterProxy
from corrmom_ref.link import Link, Parameter
from corrmom_ref.losses import ScriptedLoss
from corrmom_ref.optimizer import GradientMethod, Optimizer
from corrmom_ref.optimizers import (
    CorrectedMomentumSGD,
    CorrectedMomentumSGDRule,
    MomentumSGD,
    MomentumSGDRule,
)
from corrmom_ref.update_rule import UpdateRule

__version__ = "0.1.0"

__all__ = [
    "CorrectedMomentumSGD",
    "CorrectedMomentumSGDRule",
    "GradientMethod",
    "Hyperparameter",
    "HyperparameterProxy",
    "Link",
    "MomentumSGD",
    "MomentumSGDRule",
    "Optimizer",
    "Parameter",
    "ScriptedLoss",
    "UpdateRule",
    "__version__",
    "optimizer_hooks",
    "serializers",
    "use_fast_paths",
]
