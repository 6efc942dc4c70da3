"""corrmom_ref.torch under DistributedDataParallel (gloo, CPU): every rank steps as one process would.

Each test runs ``ddp_worker.py`` on 2 or 3 ranks (separate processes, as
``torchrun`` starts them), then replays what the ranks recorded in this
process: a single :class:`~corrmom_ref.torch.CorrectedMomentumSGD` with its
own :class:`~corrmom_ref.torch.LossScaler`, fed exactly the averaged (still
scaled) gradients that DDP gave the ranks, must take bitwise the same steps,
skip the same steps and move its scale the same way as every rank. The
averaged gradient itself is checked against the mean of the ranks' own
gradients recomputed here (to rounding: gloo's sum order is its own).

One rank's batch holds an infinity at one step: DDP's average spreads the
non-finite values to every rank, so every rank skips that step and halves
its scale. A second run resumes from rank 0's snapshot on another number of
ranks and must continue the uninterrupted single-process trajectory.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
crt = pytest.importorskip("corrmom_ref.torch")

from launch import load_worker, run_ranks  # noqa: E402

BAD_STEP, BAD_RANK = 3, 1


worker = load_worker("ddp_worker.py")


def run(
    tmp_path: Path, name: str, world: int, start: int, stop: int, fused: bool, **extra: str
) -> list[dict]:
    args = ["--start", str(start), "--stop", str(stop), "--fused", "yes" if fused else "no"]
    args += ["--bad-step", str(BAD_STEP), "--bad-rank", str(BAD_RANK), "--out", str(tmp_path / name)]
    for key, value in extra.items():
        args += [f"--{key}", value]
    run_ranks("ddp_worker.py", world, *args)
    return [torch.load(tmp_path / f"{name}.rank{r}.pt") for r in range(world)]


def same(a, b) -> bool:
    """Bitwise equal, NaN where NaN (an overflowed step's averaged gradient)."""
    return bool(
        torch.equal(a, b)
        or (
            a.shape == b.shape
            and torch.equal(a.isnan(), b.isnan())
            and torch.equal(a.nan_to_num(), b.nan_to_num())
        )
    )


def local_mean_grads(world: int, step: int, params: list) -> list:
    """The mean over the ranks of each rank's own (unscaled) gradient, recomputed in this process."""
    net = worker.model()
    with torch.no_grad():
        for p, value in zip(net.parameters(), params, strict=True):
            p.copy_(value)
    total = None
    for rank in range(world):
        net.zero_grad()
        x, y = worker.batch(step, rank, False)
        torch.nn.functional.mse_loss(net(x), y).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        total = grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]
    return [g / world for g in total]


def replay(phases: list[tuple[int, list[dict]]], fused: bool) -> None:
    """One process fed rank 0's recorded averaged gradients, checked bitwise against every rank."""
    first = phases[0][1][0]
    params = [p.clone().requires_grad_(True) for p in first["initial"]]
    opt = crt.CorrectedMomentumSGD(params, lr=worker.LR, momentum=worker.MOMENTUM, fused=fused)
    scaler = crt.LossScaler(interval=worker.INTERVAL)
    skipped_steps = []
    for start, ranks in phases:
        for rank, record in enumerate(ranks):  # a resumed run starts where the uninterrupted one is
            for mine, theirs in zip(params, record["initial"], strict=True):
                assert torch.equal(mine.detach(), theirs), f"rank {rank} resumed from other parameters"
        for i, grads in enumerate(ranks[0]["grads"]):
            step = start + i
            for rank, record in enumerate(ranks[1:], start=1):
                for a, b in zip(grads, record["grads"][i], strict=True):
                    assert same(a, b), f"rank {rank} got another averaged gradient at step {step}"
            scale = scaler.get_scale()
            if step != BAD_STEP:  # DDP's average is the mean of the ranks' own gradients (to rounding)
                for got, want in zip(grads, local_mean_grads(len(ranks), step, params), strict=True):
                    torch.testing.assert_close(got / scale, want, rtol=1e-5, atol=1e-7)
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the overflowed step's warning
                scaler.step(opt)
            scaler.update()
            if opt.last_step_skipped:
                skipped_steps.append(step)
            for rank, record in enumerate(ranks):
                assert record["skipped"][i] == opt.last_step_skipped, (rank, step)
                assert record["scale"][i] == scaler.get_scale(), (rank, step)
                assert record["t"][i] == opt.t, (rank, step)
                for mine, theirs in zip(params, record["params"][i], strict=True):
                    assert torch.equal(mine.detach(), theirs), f"rank {rank} differs after step {step}"
    assert skipped_steps == [BAD_STEP]


@pytest.mark.parametrize(
    ("first", "then", "fused", "layout"), [(2, 3, True, "chainer"), (3, 2, False, "state_dict")]
)
def test_ddp_ranks_step_as_one_process_through_an_overflow_and_a_resume(tmp_path, first, then, fused, layout):
    """Steps 0-5 on ``first`` ranks (an overflow on rank 1 at step 3), saved by rank 0, steps 6-9 on ``then``."""
    snapshot = str(tmp_path / "snapshot")
    before = run(tmp_path, "before", first, 0, 6, fused, save=snapshot, layout=layout)
    after = run(tmp_path, "after", then, 6, 10, fused, load=snapshot, layout=layout)
    assert [r["skipped"] for r in before] == [[False, False, False, True, False, False]] * first
    replay([(0, before), (6, after)], fused)
