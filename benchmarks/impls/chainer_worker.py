"""Worker serving real Chainer 7.8.1's CorrectedMomentumSGD over stdin/stdout (JSON lines).

Runs under Chainer's own interpreter (NumPy 1.26), so only the standard
library, NumPy and Chainer may be imported here besides :mod:`benchmarks.impls.base`.
Requests: ``{"cmd": "setup", "shapes": [...]}``, ``{"cmd": "run", "steps": n}``,
``{"cmd": "memory"}``, ``{"cmd": "quit"}``; each gets one JSON reply line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from benchmarks.impls.base import LR, MOMENTUM, host_data, time_steps, traced_peak


class ChainerStep:
    """``opt.update()`` over a ``chainer.Link`` holding one Parameter per shape."""

    def __init__(self) -> None:
        self.opt: Any = None

    def setup(self, shapes: list[list[int]]) -> None:
        import chainer

        params, grads = host_data([tuple(s) for s in shapes])
        link = chainer.Link()
        with link.init_scope():
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                param = chainer.Parameter(p, name=f"p{i:05d}")
                param.grad = g
                setattr(link, f"p{i:05d}", param)
        self.opt = chainer.optimizers.CorrectedMomentumSGD(lr=LR, momentum=MOMENTUM)
        self.opt.setup(link)
        self.opt.update()


def main() -> None:
    import chainer

    impl = ChainerStep()
    out = sys.stdout
    out.write(json.dumps({"version": chainer.__version__}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd == "setup":
            impl.setup(request["shapes"])
            reply: dict[str, Any] = {"ok": True}
        elif cmd == "run":
            reply = {"seconds": time_steps(impl.opt.update, int(request["steps"]))}
        elif cmd == "memory":
            reply = {"bytes": traced_peak(impl.opt.update)}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
