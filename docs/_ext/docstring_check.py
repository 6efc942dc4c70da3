"""Fail the build (under ``-W``) when a documented public name has no docstring.

autodoc runs with ``undoc-members`` so that every public member reaches
``autodoc-process-docstring``; an empty docstring there becomes a warning.
Plain class attributes (``t = 0``) that their class documents in its
``Attributes:`` section are skipped as members, so they appear once.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def check(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if name.rsplit(".", 1)[-1].startswith("_"):
        return
    if not any(line.strip() for line in lines):
        logger.warning("public %s %s has no docstring", what, name, type="docstring", subtype="missing")


def _documented_attributes() -> set[str]:
    """Names listed in the ``Attributes:`` section of any public corrmom_ref class."""
    import inspect
    import re

    import corrmom_ref

    names: set[str] = set()
    modules = [corrmom_ref, corrmom_ref.optimizer_hooks, corrmom_ref.serializers]
    for module in modules:
        for public in getattr(module, "__all__", []):
            cls = getattr(module, public)
            doc = inspect.getdoc(cls) if inspect.isclass(cls) else None
            section = re.search(r"^Attributes:\n((?:[ ]{4}.*\n?|\n)+)", doc or "", re.M)
            if section:
                names.update(re.findall(r"^[ ]{4}(\w+):", section.group(1), re.M))
    return names


def skip_documented_attribute(
    app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    if (
        what == "class"
        and name in app.config.documented_attributes
        and isinstance(obj, (int, float, str, type(None)))
    ):
        return True
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("documented_attributes", _documented_attributes(), "env")
    app.connect("autodoc-process-docstring", check)
    app.connect("autodoc-skip-member", skip_documented_attribute)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
