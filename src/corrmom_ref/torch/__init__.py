"""Chainer's momentum SGD, loss scaling, hooks and snapshots inside PyTorch training loops.

``corrmom_ref.torch`` needs PyTorch (it is the only part of corrmom_ref that
imports it at import time). See ``docs/porting.md`` for a side-by-side port of
a Chainer training loop.

* :class:`CorrectedMomentumSGD`, :class:`MomentumSGD`: ``torch.optim.Optimizer``
  subclasses with Chainer's numbers (:mod:`corrmom_ref.torch.optim`).
* :class:`LossScaler`: Chainer's dynamic loss scaling, used like
  ``torch.amp.GradScaler`` (:mod:`corrmom_ref.torch.scaler`).
* :class:`WeightDecay`, :class:`Lasso`, :class:`GradientClipping`,
  :class:`GradientHardClipping`: Chainer's hooks (:mod:`corrmom_ref.torch.hooks`).
* :func:`load_chainer_snapshot`, :func:`save_chainer_snapshot`: Chainer npz
  optimizer snapshots in and out (:mod:`corrmom_ref.torch.snapshot`).
"""

from corrmom_ref.torch.hooks import GradientClipping, GradientHardClipping, Lasso, WeightDecay
from corrmom_ref.torch.optim import CorrectedMomentumSGD, HookHandle, MomentumSGD
from corrmom_ref.torch.scaler import LossScaler
from corrmom_ref.torch.snapshot import default_chainer_path, load_chainer_snapshot, save_chainer_snapshot

__all__ = [
    "CorrectedMomentumSGD",
    "GradientClipping",
    "GradientHardClipping",
    "HookHandle",
    "Lasso",
    "LossScaler",
    "MomentumSGD",
    "WeightDecay",
    "default_chainer_path",
    "load_chainer_snapshot",
    "save_chainer_snapshot",
]
