"""Expected deviations: known, deliberate differences of one implementation.

Each implementation keeps them in one reviewed file,
``conformance/expected_deviations/<impl>.toml`` (or the path in its adapter's
``expected_deviations`` attribute)::

    [[deviation]]
    check = "test_equations::test_zero_initial_state"
    reason = "PyTorch starts the momentum buffer at the first gradient"

``check`` is ``<module>::<function>``, covering every parametrisation, or
``<module>::<function>[<id>]`` for one parametrisation only. A
matching check runs as usual and is reported *expected deviation* when it
fails, *deviation now passes* when it passes; an entry that matches no
collected check is reported as stale.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DEVIATIONS_DIR = Path(__file__).parent / "expected_deviations"


@dataclass(frozen=True)
class Deviation:
    check: str
    reason: str


def load(impl_name: str, path: str | Path | None = None) -> list[Deviation]:
    """The deviations declared for ``impl_name`` (none if it has no file)."""
    file = Path(path) if path is not None else DEVIATIONS_DIR / f"{impl_name}.toml"
    if not file.exists():
        return []
    with file.open("rb") as f:
        data = tomllib.load(f)
    entries = data.get("deviation", [])
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("check") or not entry.get("reason"):
            raise ValueError(f"{file}: deviation #{i + 1} needs both 'check' and 'reason'")
        out.append(Deviation(str(entry["check"]), str(entry["reason"])))
    return out


def check_key(module_stem: str, function_name: str) -> str:
    """The key a deviation uses for a check."""
    return f"{module_stem}::{function_name}"
