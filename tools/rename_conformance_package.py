"""Rewrite references to the suite's old import name ``conformance`` as ``corrmom_conformance``.

The suite once imported as ``conformance``; it imports as
``corrmom_conformance`` (its folder: ``src/corrmom_conformance/``). For code
written against the old name, this rewrites, in the files given, every dotted module
path ``conformance.x`` (imports, ``"pkg.module:factory"`` strings, ``-p``
and ``--pyargs`` arguments, ``:mod:`` references) and ``from conformance
import`` / ``import conformance``; it leaves file names such as
``conformance.md`` and folder paths such as ``conformance/checks`` alone::

    python tools/rename_conformance_package.py FILE...   # rewrites in place, names the files changed
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

#: ``conformance.`` followed by a module name, not preceded by a name character, a dot, a slash or a dash.
_DOTTED = re.compile(r"(?<![\w./-])conformance\.(?!(?:md|json|toml|py|txt|html|png|svg)\b)(?=[a-z_])")
#: ``from conformance import`` and ``import conformance`` (a bare package import).
_BARE = re.compile(r"\b(from|import) conformance\b(?![\w.])")


def rewrite(text: str) -> str:
    """``text`` with the old import name replaced; unchanged when it has none."""
    return _BARE.sub(r"\1 corrmom_conformance", _DOTTED.sub("corrmom_conformance.", text))


def main(paths: list[str]) -> int:
    for name in paths:
        path = Path(name)
        try:
            old = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file (an .npz fixture) names no module
            continue
        new = rewrite(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
