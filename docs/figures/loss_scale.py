"""Figure: the dynamic loss scale over a float16 run with overflows.

Runs the library itself: one float16 parameter with a float32 master copy,
``loss_scaling(interval=INTERVAL)``, and a :class:`corrmom_ref.ScriptedLoss`
whose gradient shrinks as training goes on, ``GRAD * DECAY**step`` (and is
``SPIKE`` at the steps in ``SPIKES``). The scaled gradient overflows float16
(to inf) whenever ``scale * grad > 65504``; those steps are skipped and halve
the scale. Writes ``loss_scale.png``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import page

import corrmom_ref as cr

INTERVAL = 8
STEPS = 150
GRAD = 1500.0
DECAY = 0.93
SPIKES = (70,)
SPIKE = 3000.0


def run() -> tuple[list[float], list[bool]]:
    """The scale used at each step, and whether that step overflowed."""
    w = cr.Parameter(np.zeros(1, dtype=np.float16), name="w")
    opt = cr.CorrectedMomentumSGD(lr=1e-4).setup(cr.Link(w=w))
    opt.use_fp32_update()
    opt.loss_scaling(interval=INTERVAL)
    scales, overflowed = [], []
    for step in range(STEPS):
        grad = np.array([SPIKE if step in SPIKES else GRAD * DECAY**step], dtype=np.float16)
        scales.append(opt.loss_scale)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the NaN check warns on every overflow
            opt.update(lambda grad=grad: cr.ScriptedLoss({w: grad}))
        overflowed.append(not bool(np.isfinite(w.grad).all()))
    return scales, overflowed


def main(out: Path) -> None:
    """Draw the figure into ``out / 'loss_scale.png'``."""
    scales, overflowed = run()
    with page.style():
        _draw(scales, overflowed, out)


def _draw(scales: list[float], overflowed: list[bool], out: Path) -> None:
    steps = np.arange(len(scales))
    fig, ax = plt.subplots(figsize=(page.WIDTH_IN, 5), layout="constrained")
    ax.step(steps, scales, where="post", color="C0", label="loss scale used at the step")
    bad = [s for s, o in zip(steps, overflowed, strict=True) if o]
    ax.plot(
        bad,
        [scales[s] for s in bad],
        "x",
        color="C3",
        ms=9,
        mew=2,
        label="overflow: step skipped, scale x 1/2",
    )
    threshold = [65504 / (SPIKE if s in SPIKES else GRAD * DECAY**s) for s in steps]
    ax.plot(
        steps,
        threshold,
        color="0.6",
        ls=":",
        lw=1,
        label="65504 / |g|: above it the scaled gradient overflows",
    )
    ax.axhline(65504, color="k", lw=0.8, ls="--", label="clamp 65504")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("update")
    ax.set_ylabel("scale")
    ax.set_title(f"dynamic loss scaling, interval = {INTERVAL}")
    ax.set_ylim(0.5, 2.0**18)
    ax.legend(loc="lower right")
    page.save(fig, out / "loss_scale.png")
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
