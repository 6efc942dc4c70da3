"""Parameter shapes of the three workloads: one large, many small, a real model.

Pure Python (no array library), so the Chainer worker can use it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Workload:
    """A named list of float32 parameter shapes."""

    name: str
    shapes: tuple[Shape, ...]

    @property
    def n_params(self) -> int:
        return len(self.shapes)

    @property
    def n_elements(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def resnet50_shapes(width_divisor: int = 1) -> tuple[Shape, ...]:
    """Shapes of ResNet-50's 161 parameters (He et al. 2016; 25,557,032 elements).

    Convolutions have no bias; every batch normalisation has a scale and a
    shift. ``width_divisor`` divides every channel count (for smoke tests).
    """

    def ch(c: int) -> int:
        return max(1, c // width_divisor)

    shapes: list[Shape] = [(ch(64), 3, 7, 7), (ch(64),), (ch(64),)]
    in_ch = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            out_ch = 4 * width
            shapes += [(ch(width), ch(in_ch), 1, 1), (ch(width),), (ch(width),)]
            shapes += [(ch(width), ch(width), 3, 3), (ch(width),), (ch(width),)]
            shapes += [(ch(out_ch), ch(width), 1, 1), (ch(out_ch),), (ch(out_ch),)]
            if block == 0:
                shapes += [(ch(out_ch), ch(in_ch), 1, 1), (ch(out_ch),), (ch(out_ch),)]
            in_ch = out_ch
    shapes += [(1000, ch(2048)), (1000,)]
    return tuple(shapes)


def default_workloads(quick: bool = False) -> list[Workload]:
    """The issue's workloads: 16 Mi elements; 1000 x 1 Ki; ResNet-50. ``quick`` shrinks them."""
    if quick:
        return [
            Workload("large", ((1 << 16,),)),
            Workload("small", ((1 << 10,),) * 20),
            Workload("resnet50", resnet50_shapes(width_divisor=16)),
        ]
    return [
        Workload("large", ((1 << 24,),)),
        Workload("small", ((1 << 10,),) * 1000),
        Workload("resnet50", resnet50_shapes()),
    ]
