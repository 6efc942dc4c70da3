"""Render Sphinx math nodes to MathML at build time (no JavaScript, no network).

Registered as the HTML math renderer ``mathml``: every ``:math:`` role,
``.. math::`` directive and MyST ``$...$`` / ``$$...$$`` becomes a
``<math>`` element written into the page by :mod:`latex2mathml`, which every
current browser lays out natively (MathML Core). A formula latex2mathml cannot
convert is reported as a Sphinx warning, so ``-W`` fails the build.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _mathml(node: nodes.Element, latex: str, display: str) -> str:
    try:
        return convert(latex, display=display)
    except Exception as exc:  # latex2mathml raises assorted exception types
        logger.warning("cannot render math %r as MathML: %s", latex, exc, location=node)
        return f"<code>{latex}</code>"


def visit_inline(self: Any, node: nodes.math) -> None:
    self.body.append(f'<span class="math notranslate">{_mathml(node, node.astext(), "inline")}</span>')
    raise nodes.SkipNode


def visit_block(self: Any, node: nodes.math_block) -> None:
    if node.get("label"):
        self.body.append(f'<div class="math-wrapper" id="{node["ids"][0]}">' if node.get("ids") else "<div>")
    else:
        self.body.append("<div>")
    number = node.get("number")
    if number is not None:
        self.body.append(f'<span class="eqno">({number})</span>')
    self.body.append(f'<div class="math notranslate">{_mathml(node, node.astext(), "block")}</div></div>\n')
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_html_math_renderer("mathml", (visit_inline, None), (visit_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
