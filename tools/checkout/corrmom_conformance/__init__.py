"""The suite's folder ``conformance/`` under its installed name, for a checkout that is not installed.

``pip install -e .`` maps ``corrmom_conformance`` to ``conformance/`` (see
setup.py). Without installing, put this folder on the path
(``PYTHONPATH=src:tools/checkout``; pytest in this repository adds it itself,
see ``pythonpath`` in pyproject.toml): this package takes its submodules from
``conformance/`` and runs that folder's ``__init__.py``, so it is the same
package under the same name, loaded once.
"""

from pathlib import Path

_SUITE = Path(__file__).resolve().parents[3] / "conformance"
__path__ = [str(_SUITE)]
__file__ = str(_SUITE / "__init__.py")
exec(compile((_SUITE / "__init__.py").read_text(encoding="utf-8"), __file__, "exec"))
