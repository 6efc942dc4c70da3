"""Copy-paste reproducers for failed checks: the command with its seed, and a short script.

The command reruns one check on the same implementation with the Hypothesis
seed the run used. The script runs the failing example alone, without pytest:
for a ``@given`` check it replays the example Hypothesis printed as a
``@reproduce_failure`` blob, for the state machine it is the program of API
calls Hypothesis printed, and for a plain check it calls the function with
its parameters.
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from dataclasses import dataclass

_BLOB = re.compile(r"@reproduce_failure\((?P<args>'[^']*',\s*b'[^']*')\)")
_FALSIFYING = re.compile(r"^(?:E\s+)?(Falsifying example:.*?)(?=^\S|\Z)", re.M | re.S)
_STATE_LINE = re.compile(r"^(?:E\s+)?\s*(state = \w+\(\)|state\.\w+\(.*\)|Draw \d+: .*)\s*$")


@dataclass(frozen=True)
class Reproducer:
    """How to rerun one failure: ``command`` (a shell line) and ``script`` (Python source)."""

    command: str
    script: str


def command(path: str, name: str, options: list[str], seed: object) -> str:
    """``python -m pytest -p corrmom_conformance.plugin <path>::<name> <options> --hypothesis-seed=<seed>``."""
    parts = [sys.executable, "-m", "pytest", "-p", "corrmom_conformance.plugin", f"{path}::{name}", *options]
    return shlex.join([*parts, f"--hypothesis-seed={seed}"])


def script(
    module: str,
    function: str,
    impl: str,
    backend: str,
    params: dict[str, object],
    failure_text: str,
    uses_tmp_path: bool,
) -> str:
    """A stand-alone script that runs the shrunk example of ``module.function`` on ``impl``."""
    lines = [
        f"# Reproduces {module}.{function} on --impl={impl} --backend={backend}",
        "# (run with the suite importable: installed, or PYTHONPATH holding src/ of a checkout)",
        "import pathlib, tempfile",
        "from corrmom_conformance import run_state",
        "from corrmom_conformance.adapters import resolve",
        f"adapter = resolve({impl!r}, {backend!r})",
        "run = run_state.standalone(adapter)",
    ]
    example = _FALSIFYING.search(failure_text)
    if example:
        lines += ["# Hypothesis' shrunk example:"] + [
            f"#   {ln}" for ln in example.group(1).strip().splitlines()
        ]
    program = [m.group(1) for ln in failure_text.splitlines() if (m := _STATE_LINE.match(ln))]
    blob = _BLOB.search(failure_text)
    if program and program[0].startswith("state = "):
        machine = program[0].split("=", 1)[1].strip().removesuffix("()")
        lines += ["# Hypothesis' shrunk program of API calls:"] + [f"#   {ln}" for ln in program]
        lines += [
            "# the rules the implementation's declared deviations leave out, as in the run",
            "from corrmom_conformance import deviations",
            "declared = deviations.load(adapter.name, getattr(adapter, 'expected_deviations', None))",
            f"run.deviation_of = {{d.check: d for d in declared if d.check.startswith('{module}::')}}",
            "from hypothesis.stateful import run_state_machine_as_test",
        ]
        lines += [f"from corrmom_conformance.checks.{module} import {machine}"]
        if blob:
            lines += [
                "from hypothesis import reproduce_failure",
                f"{machine} = reproduce_failure({blob.group('args')})({machine})",
            ]
        lines.append(f"run_state_machine_as_test({machine})")
        return "\n".join(lines) + "\n"
    lines.append(f"from corrmom_conformance.checks.{module} import {function} as check")
    if blob:
        lines += [
            "from hypothesis import reproduce_failure",
            f"check = reproduce_failure({blob.group('args')})(check)",
        ]
    kwargs = ["adapter=adapter", *(f"{k}={_literal(v)}" for k, v in params.items())]
    if uses_tmp_path:
        kwargs.append("tmp_path=pathlib.Path(tempfile.mkdtemp())")
    lines.append(f"check({', '.join(kwargs)})")
    return "\n".join(lines) + "\n"


def _literal(value: object) -> str:
    """``value`` as Python source (non-finite floats as ``float('nan')``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)
