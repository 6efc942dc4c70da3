"""corrmom_ref.torch under FSDP2 (``fully_shard``, DTensor parameters; gloo, CPU, 2 ranks).

``fsdp_worker.py`` runs on 2 ranks; this process puts each step's shards
back together (``Shard(0)``: rank 0's rows, then rank 1's) and replays them
in one process: :class:`~corrmom_ref.torch.CorrectedMomentumSGD` with the
plain :class:`~corrmom_ref.torch.LossScaler`, fed the averaged gradients
FSDP2 gave the ranks, must take bitwise the same steps, skip the same ones
and move its scale the same way. The ranks use
the plain :class:`~corrmom_ref.torch.LossScaler` and ``fused=False``:
a NaN in rank 1's shard alone (step 4) must skip the step on both ranks.
The sharded snapshot must be the file the single process writes, and the
run resumed from it on a fresh sharded model must continue the
uninterrupted trajectory.

The optimizer itself steps and checks DTensors shard by shard: the fused
kernel steps the local shards (at c1ab618 it raised ``NotImplementedError``
on every rank), and its own finite check (what the plain ``LossScaler``
asks for) agrees its verdict across the ranks, so a NaN in one rank's shard
skips the step everywhere (at c1ab618 that rank applied the NaN).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
crt = pytest.importorskip("corrmom_ref.torch")

from launch import load_worker, run_ranks  # noqa: E402

WORLD = 2


worker = load_worker("fsdp_worker.py")


def run(tmp_path, mode: str) -> list[dict]:
    out = tmp_path / mode
    run_ranks(
        "fsdp_worker.py", WORLD, "--mode", mode, "--out", str(out), "--snapshot", str(tmp_path / "snap.npz")
    )
    return [torch.load(f"{out}.rank{r}.pt") for r in range(WORLD)]


def full(ranks: list[dict], key: str, i: int) -> list:
    """Step ``i``'s ``key`` tensors, the ranks' shards concatenated along dim 0."""
    per_rank = [record[key][i] for record in ranks]
    return [torch.cat(shards, dim=0) for shards in zip(*per_rank, strict=True)]


def reference(ranks: list[dict], fused: bool):
    net = worker.model()
    with torch.no_grad():
        for p, value in zip(net.parameters(), ranks[0]["initial"], strict=True):
            p.copy_(value)
    opt = crt.CorrectedMomentumSGD(
        net.named_parameters(), lr=worker.LR, momentum=worker.MOMENTUM, fused=fused
    )
    return net, opt


def replay(ranks: list[dict], fused: bool, scaled: bool, save_after: int | None = None, tmp_path=None):
    """The single process fed the ranks' averaged gradients; asserts bitwise agreement at every step."""
    net, opt = reference(ranks, fused)
    scaler = crt.LossScaler(interval=worker.INTERVAL) if scaled else None
    skipped = []
    for i in range(len(ranks[0]["grads"])):
        for p, g in zip(net.parameters(), full(ranks, "grads", i), strict=True):
            p.grad = g.clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)
                scaler.update()
        if opt.last_step_skipped:
            skipped.append(i)
        for rank, record in enumerate(ranks):
            assert record["skipped"][i] == opt.last_step_skipped, f"rank {rank}, step {i}: skipped?"
            assert record["scale"][i] == (scaler.get_scale() if scaler else 1.0), (rank, i)
            assert record["t"][i] == opt.t, (rank, i)
        for got, want in zip(full(ranks, "params", i), net.parameters(), strict=True):
            assert torch.equal(got, want.detach()), f"the ranks differ from one process after step {i}"
        if save_after is not None and i + 1 == save_after:
            crt.save_chainer_snapshot(tmp_path / "single.npz", opt, module=net, scaler=scaler)
    return skipped


def test_fsdp2_steps_as_one_process_skips_together_and_resumes_from_a_sharded_snapshot(tmp_path):
    ranks = run(tmp_path, "sharded-scaler")
    for record in ranks:
        assert record["scale loaded"] is True and record["t loaded"] == worker.SAVE_AFTER
    skipped = replay(ranks, fused=False, scaled=True, save_after=worker.SAVE_AFTER, tmp_path=tmp_path)
    assert skipped == [worker.OVERFLOW_STEP, worker.SHARD_NAN_STEP]
    sharded, single = np.load(tmp_path / "snap.npz"), np.load(tmp_path / "single.npz")
    assert sorted(sharded.files) == sorted(single.files)
    for key in single.files:
        assert sharded[key].dtype == single[key].dtype, key
        assert sharded[key].tobytes() == single[key].tobytes(), key


def test_fsdp2_fused_kernel_steps_dtensors(tmp_path):
    """The fused kernel steps each rank's local shard (c1ab618: ``NotImplementedError ...
    aten._fused_sgd_.default`` on every rank). Its multiply-adds round an element by where it falls
    in the kernel's vector loop, which depends on the tensor's length, so the ranks are compared
    bitwise with one process stepping every rank's shard as a parameter of its own, the same
    tensors the ranks' kernels see."""
    ranks = run(tmp_path, "fused")
    shards = []  # (parameter index, rank, rows): Shard(0), rank r holds its own rows
    with torch.no_grad():
        for index, value in enumerate(ranks[0]["initial"]):
            rows = torch.tensor_split(value, WORLD, dim=0)
            shards += [(index, r, torch.nn.Parameter(rows[r].clone())) for r in range(WORLD)]
    opt = crt.CorrectedMomentumSGD(
        [s for _, _, s in shards], lr=worker.LR, momentum=worker.MOMENTUM, fused=True
    )
    for i in range(len(ranks[0]["grads"])):
        for index, r, shard in shards:
            shard.grad = ranks[r]["grads"][i][index].clone()
        opt.step()
        for index, r, shard in shards:
            got = ranks[r]["params"][i][index]
            assert torch.equal(got, shard.detach()), f"rank {r}, parameter {index}, step {i}"


def test_fsdp2_optimizers_own_finite_check_agrees_across_ranks(tmp_path):
    ranks = run(tmp_path, "own-check")  # a NaN in rank 1's shard at step 1: both ranks must skip
    assert [record["skipped"] for record in ranks] == [[False, True, False]] * WORLD
    replay(ranks, fused=False, scaled=True)
