"""The ``derivation`` directive: show an equation of ``docs/derivation.py``.

``{derivation} eq9-u`` renders ``derivation.EQUATIONS["eq9-u"]`` as a display
equation labelled ``eq9-u`` (referable with ``{eq}`` / ``:eq:``), so the page
shows exactly the sympy expression the derivation test proves things about.
"""

from __future__ import annotations

from typing import Any, ClassVar

import derivation
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.directives.patches import MathDirective


class DerivationEquation(MathDirective):
    """Render one named equation of :mod:`derivation` as a labelled, numbered math block."""

    required_arguments = 1
    optional_arguments = 0
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in derivation.EQUATIONS:
            raise self.error(f"unknown equation {name!r}; known: {', '.join(derivation.EQUATIONS)}")
        latex = derivation.latex(name)
        node = nodes.math_block(
            latex, latex, docname=self.env.current_document.docname, number=None, label=name
        )
        node["no-wrap"] = node["nowrap"] = False
        self.add_name(node)
        self.set_source_info(node)
        ret: list[nodes.Node] = [node]
        self.add_target(ret)
        return ret


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("derivation", DerivationEquation)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
