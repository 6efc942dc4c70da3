r"""Data-parallel training with the linear scaling rule and gradual warm-up, over MPI.

Run (K ranks, each with a minibatch of 32; the global batch is 32 K)::

    mpiexec -n 2 python -m mpi4py examples/distributed_warmup.py --plot distributed_warmup.png

A small tanh MLP learns a synthetic 3-class problem twice, from the same
start and on the same data: once with :class:`~corrmom_ref.CorrectedMomentumSGD`
(eq. (9) of Goyal et al.) and once with :class:`~corrmom_ref.MomentumSGD`
(eq. (10), no momentum correction), both wrapped by
:func:`~corrmom_ref.distributed.create_multi_node_optimizer` and driven by the
paper's schedule: warm-up from the reference rate to the linearly scaled rate,
then two decays by 10. While the rate is constant the two forms take the same
steps; whenever it changes (every warm-up step, each decay) they do not, and
the distance between their parameters grows exactly there. The plot shows
the rate, both training losses and that distance; the documentation draws
the same plot at build time with :func:`train_serial` (no MPI needed).
"""

from __future__ import annotations

import argparse

import numpy as np

import corrmom_ref as cr
from corrmom_ref import distributed
from corrmom_ref.lr_policy import LrSchedule, goyal_schedule

CLASSES, HIDDEN, PER_RANK_BATCH, REFERENCE_BATCH = 3, 32, 32, 32


def data(step: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's minibatch at ``step``: three noisy interleaved arcs in the plane."""
    rng = np.random.default_rng((step, rank))
    labels = rng.integers(0, CLASSES, PER_RANK_BATCH)
    radius = rng.uniform(0.2, 1.0, PER_RANK_BATCH)
    angle = 2.5 * radius + 2 * np.pi * labels / CLASSES + rng.normal(0, 0.15, PER_RANK_BATCH)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1), labels


def init_model(seed: int = 0) -> cr.Link:
    rng = np.random.default_rng(seed)
    return cr.Link(
        l1=cr.Link(W=cr.Parameter(rng.normal(0, 1.0, (HIDDEN, 2))), b=cr.Parameter(np.zeros(HIDDEN))),
        l2=cr.Link(W=cr.Parameter(rng.normal(0, 0.3, (CLASSES, HIDDEN))), b=cr.Parameter(np.zeros(CLASSES))),
    )


def loss_and_grads(model: cr.Link, x: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    r"""Mean softmax cross-entropy of the MLP and its gradients (backpropagation by hand)."""
    l1, l2 = model.l1, model.l2
    h = np.tanh(x @ l1.W.array.T + l1.b.array)
    logits = h @ l2.W.array.T + l2.b.array
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(-np.log(p[np.arange(n), labels]).mean())
    d_logits = p
    d_logits[np.arange(n), labels] -= 1.0
    d_logits /= n
    d_h = (d_logits @ l2.W.array) * (1.0 - h**2)
    grads = {l2.W: d_logits.T @ h, l2.b: d_logits.sum(0), l1.W: d_h.T @ x, l1.b: d_h.sum(0)}
    return loss, grads


def train(optimizer_class: type, comm: distributed.MpiCommunicator, schedule, steps: int):
    """Losses (mean over ranks) and flattened parameters after every step."""
    model = init_model()
    opt = distributed.create_multi_node_optimizer(optimizer_class(momentum=0.9), comm).setup(model)
    opt.add_hook(LrSchedule(schedule))
    losses, params = [], []
    for step in range(steps):
        loss, grads = loss_and_grads(model, *data(step, comm.rank))
        opt.update(lambda grads=grads: cr.ScriptedLoss(grads))
        losses.append(comm.mpi_comm.allreduce(loss) / comm.size)
        params.append(np.concatenate([p.array.ravel() for p in model.params()]))
    return np.array(losses), np.array(params)


def train_serial(optimizer_class: type, ranks: int, schedule, steps: int):
    """What ``ranks`` ranks of :func:`train` compute together, in one process without MPI.

    Every rank's batch has the same size, so the mean of the ranks' mean
    losses and gradients is the mean over their concatenated batches: one
    process stepping on the global batch takes the same steps, up to float
    rounding (``tests/distributed`` checks that equivalence under MPI). The
    documentation draws its figure this way.
    """
    model = init_model()
    opt = optimizer_class(momentum=0.9).setup(model)
    opt.add_hook(LrSchedule(schedule))
    losses, params = [], []
    for step in range(steps):
        batches = [data(step, rank) for rank in range(ranks)]
        x = np.concatenate([x for x, _ in batches])
        labels = np.concatenate([labels for _, labels in batches])
        loss, grads = loss_and_grads(model, x, labels)
        opt.update(lambda grads=grads: cr.ScriptedLoss(grads))
        losses.append(loss)
        params.append(np.concatenate([p.array.ravel() for p in model.params()]))
    return np.array(losses), np.array(params)


def schedule_for(ranks: int, steps: int, base_lr: float):
    """The paper's schedule for ``ranks`` ranks: warm-up over the first sixth, /10 at 1/2 and 5/6."""
    warmup, boundaries = steps // 6, [steps // 2, 5 * steps // 6]
    return goyal_schedule(base_lr, PER_RANK_BATCH * ranks, REFERENCE_BATCH, warmup, boundaries)


def compare(train_one, schedule, steps: int) -> tuple[dict, np.ndarray]:
    """Both optimizers through ``train_one(optimizer_class, schedule, steps)``; runs and parameter distance."""
    runs = {
        "CorrectedMomentumSGD (eq. 9)": train_one(cr.CorrectedMomentumSGD, schedule, steps),
        "MomentumSGD (eq. 10, uncorrected)": train_one(cr.MomentumSGD, schedule, steps),
    }
    (_, w9), (_, w10) = runs.values()
    return runs, np.linalg.norm(w9 - w10, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--base-lr", type=float, default=0.1)
    parser.add_argument("--plot", help="write the figure here (needs matplotlib)")
    args = parser.parse_args()

    comm = distributed.create_communicator()
    warmup, boundaries = args.steps // 6, [args.steps // 2, 5 * args.steps // 6]
    schedule = schedule_for(comm.size, args.steps, args.base_lr)
    runs, distance = compare(
        lambda optimizer_class, schedule, steps: train(optimizer_class, comm, schedule, steps),
        schedule,
        args.steps,
    )
    if comm.rank != 0:
        return
    (loss9, _), (loss10, _) = runs.values()
    lrs = [schedule(t) for t in range(args.steps)]
    print(f"{comm.size} ranks x batch {PER_RANK_BATCH}; lr {lrs[0]:g} -> {max(lrs):g}", end=" ")
    print(f"over {warmup} steps, /10 at {boundaries}")
    for t in [warmup - 1, warmup + 20, boundaries[0] - 1, boundaries[0] + 20, args.steps - 1]:
        losses = f"loss eq9 {loss9[t]:.4f}  eq10 {loss10[t]:.4f}"
        print(f"step {t + 1:4d}: lr {lrs[t]:.4f}  {losses}  |w9 - w10| {distance[t]:.4f}")
    if args.plot:
        plot(args.plot, lrs, runs, distance)


def plot(path: str, lrs, runs, distance, save=None) -> None:
    """Learning rate, loss and the distance between the two forms, one panel each (7.5 in wide).

    ``save(fig, path)`` writes the figure when given (the docs record its text
    size that way), else ``fig.savefig`` at 96 dpi.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(7.5, 8), sharex=True)
    steps = np.arange(1, len(lrs) + 1)
    axes[0].plot(steps, lrs, color="black")
    axes[0].set_ylabel("learning rate")
    for label, (losses, _) in runs.items():
        axes[1].plot(steps, losses, label=label, lw=1)
    axes[1].set_ylabel("training loss")
    axes[1].set_yscale("log")
    axes[1].legend()
    axes[2].plot(steps, distance, color="tab:red")
    axes[2].set_ylabel(r"$\|w_{(9)} - w_{(10)}\|$")
    axes[2].set_xlabel("step")
    fig.suptitle("Data-parallel momentum SGD with warm-up:\ncorrected vs uncorrected")
    fig.tight_layout()
    if save is not None:
        save(fig, path)  # the docs build: its own figure machinery, nothing printed
    else:
        fig.savefig(path, dpi=96)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
