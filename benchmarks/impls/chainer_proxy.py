"""Real Chainer, measured in a worker process started from Chainer's own virtualenv.

The worker stays alive for the whole run, so its repetitions alternate with
the in-process implementations exactly like theirs do.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.impls.base import Shape

REPO_ROOT = Path(__file__).resolve().parents[2]


class ChainerProxy:
    """Client of :mod:`benchmarks.impls.chainer_worker` running under ``python``."""

    def __init__(self, python: str) -> None:
        self.name = "chainer 7.8.1"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self._proc = subprocess.Popen(
            [python, "-m", "benchmarks.impls.chainer_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        hello = self._read()
        self.name = f"chainer {hello['version']}"

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the Chainer worker exited (see its stderr above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def setup(self, shapes: Sequence[Shape]) -> None:
        self._ask(cmd="setup", shapes=[list(s) for s in shapes])

    def run(self, steps: int) -> float:
        return float(self._ask(cmd="run", steps=steps)["seconds"])

    def peak_extra_bytes(self) -> int | None:
        return int(self._ask(cmd="memory")["bytes"])

    def close(self) -> None:
        """Keep the worker (it is reused for the next workload); see :meth:`shutdown`."""

    def shutdown(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
