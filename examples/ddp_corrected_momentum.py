"""Chainer's corrected momentum SGD under DistributedDataParallel (CPU, gloo).

Run: ``torchrun --nproc_per_node 2 examples/ddp_corrected_momentum.py``.
DDP averages the (still loss-scaled) gradients in backward, so every rank
gives the optimizer the same gradient and takes the same step; an overflow
on one rank's batch reaches every rank through the average, and every rank
skips that step. Rank 0 saves the optimizer in Chainer's layout.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import corrmom_ref.torch as crt


def main(snapshot: str = "ddp_optimizer.npz") -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model = DistributedDataParallel(net)  # broadcasts rank 0's parameters
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.05, momentum=0.9)
    scaler = crt.LossScaler(interval=1000)  # dynamic, as Chainer's loss_scaling()
    for step in range(5):
        g = torch.Generator().manual_seed(1000 * step + rank)  # each rank its own batch
        x, y = torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)
        opt.zero_grad(set_to_none=True)
        scaler.scale(torch.nn.functional.mse_loss(model(x), y)).backward()
        scaler.step(opt)
        scaler.update()
    if rank == 0:
        crt.save_chainer_snapshot(snapshot, opt, scaler=scaler)
        print(f"t = {opt.t}, loss scale {scaler.get_scale()}, saved {snapshot}")
    # Drop DDP while the process group is still registered: DDP's reducer must
    # not hold the group's last reference, since it destroys the group without
    # releasing the GIL while a gloo thread may wait for it (a deadlock at exit).
    del model
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
