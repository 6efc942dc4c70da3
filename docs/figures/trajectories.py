"""Figure: eq. (9) against uncorrected and corrected eq. (10) under warm-up and step decay.

Runs the library itself on the quadratic of :mod:`schedule`:
``CorrectedMomentumSGD`` (eq. 9), ``MomentumSGD`` (eq. 10, no correction) and
``MomentumSGD`` whose state is multiplied by eta_{t+1}/eta_t whenever the rate
changes (eq. 10 with the momentum correction). Writes ``trajectories.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import page
import schedule

import corrmom_ref as cr


def run(optimizer_cls: type, correct: bool = False) -> np.ndarray:
    """Positions w_0..w_STEPS of ``optimizer_cls`` on the quadratic (float64)."""
    w = cr.Parameter(np.array(schedule.W0, dtype=np.float64), name="w")
    opt = optimizer_cls(lr=schedule.lr_at(0), momentum=schedule.MOMENTUM).setup(cr.Link(w=w))
    curvature = np.array(schedule.CURVATURE)
    path = [w.array.copy()]
    for step in range(schedule.STEPS):
        new_lr = schedule.lr_at(step)
        if correct and w.update_rule.state is not None and new_lr != opt.lr:
            w.update_rule.state["v"] *= new_lr / opt.lr
        opt.lr = new_lr
        w.grad = curvature * w.array
        opt.update()
        path.append(w.array.copy())
    return np.array(path)


def main(out: Path) -> None:
    """Draw the figure into ``out / 'trajectories.png'``."""
    eq9 = run(cr.CorrectedMomentumSGD)
    eq10 = run(cr.MomentumSGD)
    eq10c = run(cr.MomentumSGD, correct=True)
    with page.style():
        _draw(eq9, eq10, eq10c, out)


def _draw(eq9: np.ndarray, eq10: np.ndarray, eq10c: np.ndarray, out: Path) -> None:
    steps = np.arange(schedule.STEPS + 1)
    fig, (ax_lr, ax_w, ax_gap) = plt.subplots(
        3, 1, figsize=(page.WIDTH_IN, 9.5), sharex=True, layout="constrained"
    )
    ax_lr.step(steps[:-1], [schedule.lr_at(s) for s in steps[:-1]], where="post", color="k")
    ax_lr.set_ylabel(r"$\eta_{t+1}$")
    ax_lr.set_title("learning rate: linear warm-up, then step decay")
    for path, label, style in (
        (eq9, "eq. (9) (CorrectedMomentumSGD)", dict(color="C0", lw=2.5)),
        (eq10, "eq. (10) uncorrected (MomentumSGD)", dict(color="C3", ls="--")),
        (eq10c, r"eq. (10) with $\eta_{t+1}/\eta_t$ correction", dict(color="C2", ls=":", lw=2)),
    ):
        ax_w.plot(steps, path[:, 1], label=label, **style)
    ax_w.set_ylabel(rf"$w^{{(2)}}$ (curvature {schedule.CURVATURE[1]:g})")
    ax_w.legend()
    ax_w.set_title("one coordinate of the weights")
    floor = 1e-18  # exact agreement (a gap of 0) is drawn here
    ax_gap.semilogy(
        steps,
        np.maximum(np.abs(eq10 - eq9).max(axis=1), floor),
        color="C3",
        ls="--",
        label="uncorrected eq. (10) - eq. (9)",
    )
    ax_gap.semilogy(
        steps,
        np.maximum(np.abs(eq10c - eq9).max(axis=1), floor),
        color="C2",
        ls=":",
        label="corrected eq. (10) - eq. (9): rounding only (0 drawn at 1e-18)",
    )
    ax_gap.set_ylim(floor / 10, 10)
    ax_gap.set_ylabel(r"$\max_i |\Delta w^{(i)}|$")
    ax_gap.set_xlabel("step t")
    ax_gap.legend()
    ax_gap.set_title("gap between the forms")
    for ax in (ax_lr, ax_w, ax_gap):
        for s in (schedule.WARMUP, *schedule.DECAY_AT):
            ax.axvline(s, color="0.8", lw=0.8, zorder=0)
    page.save(fig, out / "trajectories.png")
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
