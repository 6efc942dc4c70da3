"""Chainer's corrected momentum SGD under FSDP2 (``fully_shard``, CPU, gloo).

Run: ``torchrun --nproc_per_node 2 examples/fsdp2_corrected_momentum.py``.
Each rank holds a shard of every parameter, gradient and momentum buffer.
The optimizer steps its local shards (fused by default) and the plain
:class:`~corrmom_ref.torch.LossScaler` agrees the overflow verdict over the
ranks (one ``all_reduce`` of one number per gradient), so a NaN in one
rank's shard skips the step on every rank. The snapshot is written in
Chainer's layout, gathering one buffer at a time.
"""

from __future__ import annotations

import gc
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import corrmom_ref.torch as crt
from corrmom_ref.torch.distributed import save_sharded_chainer_snapshot


def main(snapshot: str = "fsdp2_optimizer.npz") -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    fully_shard(net, mesh=init_device_mesh("cpu", (dist.get_world_size(),)))
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=0.05, momentum=0.9)
    scaler = crt.LossScaler(interval=1000)
    for step in range(5):
        g = torch.Generator().manual_seed(1000 * step + rank)
        x, y = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
        opt.zero_grad(set_to_none=True)
        scaler.scale(torch.nn.functional.mse_loss(net(x), y)).backward()
        scaler.step(opt)
        scaler.update()
    save_sharded_chainer_snapshot(snapshot, opt, module=net, scaler=scaler)  # every rank; rank 0 writes
    if rank == 0:
        print(f"t = {opt.t}, loss scale {scaler.get_scale()}, saved {snapshot}")
    # Free the sharded model while the process group is still registered: FSDP's
    # state holds the group in a reference cycle, which only the garbage collector
    # frees, perhaps after the group was destroyed or while Python shuts down.
    del net, opt
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
