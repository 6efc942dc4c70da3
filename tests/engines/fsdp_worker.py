"""One rank of an FSDP2 run (``fully_shard``, DTensor parameters, gloo, CPU); run by test_fsdp2.py.

Modes (``--mode``):

* ``sharded-scaler``: :class:`~corrmom_ref.torch.CorrectedMomentumSGD`
  (``fused=False``) with the plain :class:`~corrmom_ref.torch.LossScaler`,
  steps 0-5; rank 1's batch holds an infinity at step 3, and at step 4 a NaN
  is written into rank 1's own shard of one gradient only. Rank 0 then
  saves a Chainer-layout snapshot (one buffer gathered at a time), every
  rank builds a fresh sharded model and optimizer, loads it, and trains
  steps 6-7.
* ``fused``: the fused optimizer stepping DTensors directly (no scaler).
* ``own-check``: the plain :class:`~corrmom_ref.torch.LossScaler`, i.e. the
  optimizer's own finite check, with a NaN in rank 1's shard at step 1.

Every rank records, per step, its local shards of the (averaged, still
scaled) gradients and of the parameters after the step, whether it
skipped, and the scale, into ``OUT.rank<r>.pt``.
"""

from __future__ import annotations

import argparse
import gc

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import corrmom_ref.torch as crt
from corrmom_ref.torch.distributed import load_sharded_chainer_snapshot, save_sharded_chainer_snapshot

LR, MOMENTUM, INTERVAL = 0.05, 0.9, 2
OVERFLOW_STEP, SHARD_NAN_STEP, SAVE_AFTER, STEPS = 3, 4, 6, 8


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def batch(step: int, rank: int, bad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    x, y = torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g)
    if bad:
        x[0, 0] = float("inf")
    return x, y


def local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local().detach().clone()


def sharded(mesh) -> tuple[torch.nn.Module, torch.nn.Module]:
    net = model()
    fully_shard(net, mesh=mesh)
    return net, net


def train(net, opt, scaler, steps, rank, record, shard_nan_step=-1, overflow_step=-1) -> None:
    for step in steps:
        x, y = batch(step, rank, step == overflow_step and rank == 1)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x), y)
        (scaler.scale(loss) if scaler is not None else loss).backward()  # FSDP2 reduce-scatters
        if step == shard_nan_step and rank == 1:
            first = next(iter(net.parameters()))
            first.grad.to_local().view(-1)[0] = float("nan")  # this rank's shard only
        record["grads"].append([local(p.grad) for p in net.parameters()])
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        record["skipped"].append(bool(opt.last_step_skipped))
        record["scale"].append(scaler.get_scale() if scaler is not None else 1.0)
        record["t"].append(opt.t)
        record["params"].append([local(p) for p in net.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["sharded-scaler", "fused", "own-check"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--snapshot", default="")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    net, _ = sharded(mesh)
    record: dict = {"grads": [], "skipped": [], "scale": [], "params": [], "t": []}
    record["initial"] = [p.full_tensor().detach().clone() for p in net.parameters()]
    if args.mode == "sharded-scaler":
        opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=LR, momentum=MOMENTUM, fused=False)
        scaler = crt.LossScaler(interval=INTERVAL)
        train(net, opt, scaler, range(SAVE_AFTER), rank, record, SHARD_NAN_STEP, OVERFLOW_STEP)
        save_sharded_chainer_snapshot(args.snapshot, opt, module=net, scaler=scaler)
        dist.barrier()  # rank 0 has written it
        state = {n: p.detach().clone() for n, p in net.state_dict().items()}  # sharded (DTensors)
        net, _ = sharded(mesh)  # a fresh sharded model and optimizer, as after a restart
        net.load_state_dict(state)
        opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=LR, momentum=MOMENTUM, fused=False)
        scaler = crt.LossScaler(interval=INTERVAL)
        record["scale loaded"] = load_sharded_chainer_snapshot(opt, args.snapshot, module=net, scaler=scaler)
        record["t loaded"] = opt.t
        train(net, opt, scaler, range(SAVE_AFTER, STEPS), rank, record)
    elif args.mode == "fused":
        opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=LR, momentum=MOMENTUM, fused=True)
        train(net, opt, None, range(3), rank, record)
    else:
        opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=LR, momentum=MOMENTUM, fused=False)
        train(net, opt, crt.LossScaler(interval=INTERVAL), range(3), rank, record, shard_nan_step=1)
    torch.save(record, f"{args.out}.rank{rank}.pt")
    del net, opt, mesh
    gc.collect()  # FSDP's state holds the group in a cycle: free it before the group goes (see the example)
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank}: {args.mode} done", flush=True)


if __name__ == "__main__":
    main()
