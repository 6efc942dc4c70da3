"""The parameter sets a step is timed on."""

from __future__ import annotations

from dataclasses import dataclass

#: ResNet-50's parameter shapes (conv weights, batch-norm scales and shifts, fc), 25.6 M values.
RESNET50: list[tuple[int, ...]] = (
    [(64, 3, 7, 7), (64,), (64,)]
    + [
        s
        for c_in, mid, out, blocks in (
            (64, 64, 256, 3),
            (256, 128, 512, 4),
            (512, 256, 1024, 6),
            (1024, 512, 2048, 3),
        )
        for b in range(blocks)
        for s in [
            (mid, c_in if b == 0 else out, 1, 1),
            (mid,),
            (mid,),
            (mid, mid, 3, 3),
            (mid,),
            (mid,),
            (out, mid, 1, 1),
            (out,),
            (out,),
        ]
        + ([(out, c_in, 1, 1), (out,), (out,)] if b == 0 else [])
    ]
    + [(1000, 2048), (1000,)]
)


@dataclass(frozen=True)
class Workload:
    """Parameters of these shapes, timed in ``rounds`` rounds by ``nox -s bench``."""

    name: str
    shapes: list[tuple[int, ...]]
    #: Rounds of ``nox -s bench``: the small workload's steps are short and, under XLA, the
    #: noisiest of the table (a single round moves a row by a factor of two), so it is given
    #: three times the rounds for about the same time per workload.
    rounds: int = 7

    @property
    def elements(self) -> int:
        total = 0
        for shape in self.shapes:
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


def workloads(quick: bool) -> list[Workload]:
    """Full: one 16 Mi parameter, 1000 x 1 Ki, ResNet-50. Quick: tiny versions for smoke tests."""
    if quick:
        return [Workload("large", [(1 << 16,)]), Workload("small", [(1 << 10,)] * 20)]
    return [
        Workload("large", [(1 << 24,)]),
        Workload("small", [(1 << 10,)] * 1000, rounds=21),
        Workload("resnet50", RESNET50),
    ]
