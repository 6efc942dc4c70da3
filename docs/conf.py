"""Sphinx configuration of the corrmom-ref documentation (``nox -s docs``).

Everything is built offline: math is rendered to MathML at build time
(``_ext/mathml_math.py``), the figures are drawn by the scripts in
``figures/`` from the library itself, and results produced by other sessions
(the conformance matrix, the benchmark) are copied in when they exist
(``_ext/artefacts.py``). The build is run with ``-W --keep-going -n``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent

# Sphinx's notices of its own coming API removals, raised inside the
# extensions this site uses (myst-parser, furo), not in our code: they are for
# those projects to act on and say nothing to a reader of this build.
warnings.filterwarnings(
    "ignore",
    message=r".*deprecated.*",
    category=PendingDeprecationWarning,
    module=r"(myst_parser|furo)(\.|$)",
)
warnings.filterwarnings(
    "ignore", message=r".*deprecated.*", category=DeprecationWarning, module=r"(myst_parser|furo)(\.|$)"
)
ROOT = DOCS.parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS), str(ROOT / "src")]

project = "corrmom-ref"
author = "corrmom-ref developers"
copyright = "2026, corrmom-ref developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "mathml_math",
    "derivation_directive",
    "artefacts",
    "docstring_check",
]

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_update_mathjax = False  # math is MathML; no MathJax classes or scripts
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated", "_auto/*.md", "figures"]
html_math_renderer = "mathml"
math_numfig = True
math_eqref_format = "({number})"
numfig = True

html_theme = "furo"
html_title = "corrmom-ref"
html_static_path = ["_static"]
html_css_files = ["mathml.css"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = True
#: Names in signatures that have no page here (standard library and typing;
#: intersphinx would need the network).
nitpick_ignore_regex = [
    ("py:class", r"(typing|collections\.abc|types|io)\..*"),
    ("py:class", r"(Any|Callable|Iterator|Iterable|Mapping|Literal|Sequence|IO|BinaryIO|PathLike|Self)"),
    ("py:class", r"(optional|array|Array|os\.PathLike.*|pathlib\..*)"),
    # private base classes and type aliases of the library (not public API)
    ("py:class", r"corrmom_ref\.(\w+\.)*_\w+\..*"),
    # corrmom_ref.torch: its private base class, and the classes of NumPy and PyTorch in signatures
    ("py:class", r"(corrmom_ref\.torch\.optim\.)?_ChainerMomentum"),
    ("py:class", r"(numpy|torch)\.[\w.]+"),
    ("py:(class|obj)", r"(corrmom_ref\.hyperparameter\.T|IgnoreName|NoiseFunc|Schedule)"),
    # corrmom_ref.optax: JAX, optax and NumPy types in signatures, and its private aliases
    ("py:class", r"(jax|optax|numpy)\..*|File|PathMapping"),
    (
        "py:(class|obj|exc)",
        r"(int|float|str|bool|bytes|dict|list|tuple|object|None|type|"
        r"TypeError|ValueError|KeyError|RuntimeError|AttributeError|UserWarning|DeprecationWarning)",
    ),
]
