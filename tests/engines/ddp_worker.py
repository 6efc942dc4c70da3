"""One rank of a DistributedDataParallel run of corrmom_ref.torch (gloo, CPU); run by test_ddp.py.

Trains a tiny MLP for steps ``start .. stop-1`` with
:class:`corrmom_ref.torch.CorrectedMomentumSGD` and a dynamic
:class:`corrmom_ref.torch.LossScaler`, each rank on its own batch (a
function of the step and the rank). At ``--bad-step`` rank ``--bad-rank``'s
batch holds an infinity, so only that rank's own gradient overflows; DDP's
averaging spreads it. Every rank records, per step, the averaged (still
scaled) gradients the optimizer is given, whether the step was skipped,
the scale afterwards and the parameters afterwards, into ``OUT.rank<r>.pt``.
With ``--load`` it resumes from rank 0's snapshot (model ``state_dict`` plus
the optimizer and scale in Chainer's layout, or the optimizer's and scaler's
``state_dict``); with ``--save`` rank 0 writes one after the last step.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import corrmom_ref.torch as crt

LR, MOMENTUM, INTERVAL = 0.05, 0.9, 2


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def batch(step: int, rank: int, bad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(4, 3, generator=g)
    y = torch.randn(4, 1, generator=g)
    if bad:
        x[0, 0] = float("inf")
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("start", "stop", "bad-step", "bad-rank"):
        parser.add_argument(f"--{name}", type=int, default=-1)
    parser.add_argument("--fused", choices=["yes", "no"], required=True)
    parser.add_argument("--layout", choices=["chainer", "state_dict"], default="chainer")
    parser.add_argument("--load", default="")
    parser.add_argument("--save", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    net = model()
    if args.load:
        net.load_state_dict(torch.load(args.load + ".model.pt"))
    ddp = DistributedDataParallel(net)  # broadcasts rank 0's parameters
    opt = crt.CorrectedMomentumSGD(
        net.named_parameters(), lr=LR, momentum=MOMENTUM, fused=args.fused == "yes"
    )
    scaler = crt.LossScaler(interval=INTERVAL)
    if args.load and args.layout == "chainer":
        crt.load_chainer_snapshot(opt, args.load + ".npz", scaler=scaler)
    elif args.load:
        saved = torch.load(args.load + ".opt.pt")
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
    record: dict[str, list] = {"grads": [], "skipped": [], "scale": [], "params": [], "t": []}
    record["initial"] = [p.detach().clone() for p in net.parameters()]
    for step in range(args.start, args.stop):
        x, y = batch(step, rank, step == args.bad_step and rank == args.bad_rank)
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # DDP averages the scaled gradients over the ranks
        record["grads"].append([p.grad.detach().clone() for p in net.parameters()])
        scaler.step(opt)
        scaler.update()
        record["skipped"].append(opt.last_step_skipped)
        record["scale"].append(scaler.get_scale())
        record["t"].append(opt.t)
        record["params"].append([p.detach().clone() for p in net.parameters()])
    if args.save and rank == 0:
        torch.save(net.state_dict(), args.save + ".model.pt")
        if args.layout == "chainer":
            crt.save_chainer_snapshot(args.save + ".npz", opt, scaler=scaler)
        else:
            torch.save({"optimizer": opt.state_dict(), "scaler": scaler.state_dict()}, args.save + ".opt.pt")
    torch.save(record, f"{args.out}.rank{rank}.pt")
    del ddp  # before the group goes: see examples/ddp_corrected_momentum.py on the deadlock at exit
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank} of {os.environ['WORLD_SIZE']}: steps {args.start}..{args.stop - 1} done", flush=True)


if __name__ == "__main__":
    main()
