"""Expected deviations: known, deliberate differences of one implementation.

Each implementation keeps them in one reviewed file,
``expected_deviations/<impl>.toml`` beside this module (or the path in its adapter's
``expected_deviations`` attribute)::

    [[deviation]]
    check = "test_equations::test_zero_initial_state"
    match = "parameter 'w' first diverges at step 1"
    reason = "PyTorch starts the momentum buffer at the first gradient"

``check`` is ``<module>::<function>``, covering every parametrisation, or
``<module>::<function>[<id>]`` for one parametrisation only. Each entry must
name *what* deviates, so that any other failure of the same check still
fails:

* ``match``: a regular expression searched in the failure, written
  ``<ExceptionType>: <message>`` (the assertion that deviates). The check runs
  as usual and is reported *expected deviation* when it fails with a matching
  failure, *fail* when it fails any other way, and *deviation now passes*
  when it passes.
* ``without``: for the state machine, the rules (or kinds of step) to leave
  out for this implementation; the rest of the machine runs and must pass.

An entry that matches no collected check is reported as stale.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEVIATIONS_DIR = Path(__file__).parent / "expected_deviations"


@dataclass(frozen=True)
class Deviation:
    """One declared deviation (see the module docstring for the fields)."""

    check: str
    reason: str
    match: str | None = None
    without: tuple[str, ...] = ()

    def matches(self, failure: str) -> bool:
        """Whether ``failure`` (``<ExceptionType>: <message>``) is the declared one."""
        return self.match is not None and re.search(self.match, failure) is not None


def load(impl_name: str, path: str | Path | None = None) -> list[Deviation]:
    """The deviations declared for ``impl_name`` (none if it has no file)."""
    file = Path(path) if path is not None else DEVIATIONS_DIR / f"{impl_name}.toml"
    if not file.exists():
        return []
    with file.open("rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{file}: not valid TOML: {error}") from error
    entries = data.get("deviation", [])
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("check") or not entry.get("reason"):
            raise ValueError(f"{file}: deviation #{i + 1} needs both 'check' and 'reason'")
        match, without = entry.get("match"), entry.get("without", [])
        if bool(match) == bool(without):
            raise ValueError(
                f"{file}: deviation #{i + 1} ({entry['check']}) must name what deviates: exactly one of "
                "'match' (a regular expression of the failure) or 'without' (state-machine rules to leave out)"
            )
        if match:
            try:
                re.compile(str(match))
            except re.error as error:
                raise ValueError(f"{file}: deviation #{i + 1}: bad 'match' pattern: {error}") from error
        out.append(Deviation(str(entry["check"]), str(entry["reason"]), match and str(match), tuple(without)))
    return out


def check_key(module_stem: str, function_name: str) -> str:
    """The key a deviation uses for a check."""
    return f"{module_stem}::{function_name}"
