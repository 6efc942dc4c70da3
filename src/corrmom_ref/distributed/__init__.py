r"""Data-parallel training over MPI (mpi4py): ChainerMN's multi-node optimizer, reduced.

With :math:`k` ranks each computing the mean gradient :math:`g_r` of its own
minibatch of :math:`b` examples, the mean over the whole minibatch of
:math:`kb` examples is

.. math::

    g = \frac{1}{k} \sum_{r=1}^{k} g_r,

one allreduce. Every rank then applies the same update to the same
parameters, so the :math:`k` ranks follow the trajectory of one process with
batch :math:`kb` (up to the order of floating-point additions), and all ranks
hold the same bits. This is the setting of Goyal et al. (2017): with the
linear scaling rule and gradual warm-up (:mod:`corrmom_ref.lr_policy`) the
learning rate changes, which is where momentum correction matters.

mpi4py is an optional dependency (``pip install ".[mpi]"``); it is
imported when a communicator is created, not by this package.
"""

from corrmom_ref.distributed.checkpoint import load_npz, save_npz
from corrmom_ref.distributed.communicator import MpiCommunicator, create_communicator
from corrmom_ref.distributed.multi_node_optimizer import MultiNodeOptimizer, create_multi_node_optimizer

__all__ = [
    "MpiCommunicator",
    "MultiNodeOptimizer",
    "create_communicator",
    "create_multi_node_optimizer",
    "load_npz",
    "save_npz",
]
