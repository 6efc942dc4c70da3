"""Build the documentation site and check what a reader gets.

The site is built once per session with the same flags as ``nox -s docs``
(``-W --keep-going -n``: any warning fails). Then: no page loads anything
from the network; the maths page carries the MathML of exactly the
expressions in ``docs/derivation.py``; every code example is a doctest; and
headless Chromium lays the math out as real two-dimensional formulas (a
fraction's numerator above its denominator), with a screenshot kept under
``docs/_build/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
latex2mathml = pytest.importorskip("latex2mathml.converter")

from sphinx.cmd.build import build_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCREENSHOTS = DOCS / "_build" / "screenshots"
sys.path.insert(0, str(DOCS))

import derivation  # noqa: E402


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh build of the site; fails on any Sphinx warning."""
    out = tmp_path_factory.mktemp("html")
    status = build_main(["-E", "-q", "-W", "--keep-going", "-n", "-b", "html", str(DOCS), str(out)])
    assert status == 0, "sphinx-build reported warnings or errors (see the output above)"
    return out


EXTERNAL = re.compile(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""", re.I)


def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 8
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not EXTERNAL.search(html), f"{page.name} loads an external resource"
        assert not re.search(r"<script\b[^>]*(mathjax|katex)", html, re.I), f"{page.name} loads a math script"
    for css in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*[\"']?(https?:)?//", css.read_text(encoding="utf-8")), (
            css.name
        )


def test_maths_page_shows_the_derivation_expressions(site: Path) -> None:
    html = (site / "maths.html").read_text(encoding="utf-8")
    for name in derivation.EQUATIONS:
        mathml = latex2mathml.convert(derivation.latex(name), display="block")
        assert mathml in html, f"equation {name} is not on the page as derivation.py renders it"
    assert "$" not in re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S), "unrendered $...$ left"


def test_api_page_documents_every_public_name(site: Path) -> None:
    """Each name in ``__all__`` of the public modules has an entry on the API
    page (api.md lists the top-level classes by hand, so a new one must be
    added there)."""
    import corrmom_ref

    html = (site / "api.html").read_text(encoding="utf-8")
    import corrmom_ref.distributed
    import corrmom_ref.flat
    import corrmom_ref.lr_policy
    import corrmom_ref.optax

    public = (
        corrmom_ref,
        corrmom_ref.optimizer_hooks,
        corrmom_ref.serializers,
        corrmom_ref.lr_policy,
        corrmom_ref.flat,
        corrmom_ref.distributed,
        corrmom_ref.optax,
    )
    for module in public:
        for name in module.__all__:
            if name.startswith("_") or inspect.ismodule(getattr(module, name)):
                continue
            assert f'id="{module.__name__}.{name}"' in html, (
                f"{module.__name__}.{name} is not on the API page"
            )


def fences(text: str) -> list[tuple[str, str]]:
    """The (info string, body) of every top-level ``` fence in a Markdown text."""
    found, info, body = [], None, []
    for line in text.splitlines():
        if info is None and line.startswith("```"):
            info, body = line[3:].strip(), []
        elif info is not None and line.strip() == "```":
            found.append((info, "\n".join(body)))
            info = None
        elif info is not None:
            body.append(line)
    assert info is None, "unclosed fence"
    return found


def test_every_code_example_is_a_doctest() -> None:
    """Python examples must be ``pycon`` blocks starting with ``>>>`` (pytest
    --doctest-glob runs them); other code fences are shell commands or data."""
    for page in DOCS.glob("*.md"):
        for info, body in fences(page.read_text(encoding="utf-8")):
            if info.startswith("{"):
                continue  # a MyST directive (figure, note, derivation, ...)
            assert info in {"pycon", "bash", "text", "json"}, f"{page.name}: code block of kind {info!r}"
            if info == "pycon":
                assert body.lstrip().startswith(">>>"), f"{page.name}: pycon block without >>>"


def test_figures_were_drawn(site: Path) -> None:
    for name in ("trajectories.png", "loss_scale.png"):
        image = site / "_images" / name
        assert image.exists() and image.stat().st_size > 10_000, name


#: Debian's ``chromium`` (or the browser named by $CHROMIUM, e.g. a CI runner's Chrome).
CHROMIUM = next(
    filter(
        None, (shutil.which(n) for n in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser") if n)
    ),
    None,
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
]

#: Runs in the page: does the browser lay MathML out (numerator above denominator)?
PROBE = """<script>
window.addEventListener('load', () => {
  const fracs = [...document.querySelectorAll('math[display="block"] mfrac')];
  const stacked = fracs.filter(f => {
    const [num, den] = f.children;
    return num.getBoundingClientRect().bottom <= den.getBoundingClientRect().top + 1;
  }).length;
  const out = document.createElement('pre');
  out.id = 'mathml-probe';
  out.textContent = JSON.stringify({
    mathml: typeof MathMLElement !== 'undefined' && fracs.length > 0 && fracs[0] instanceof MathMLElement,
    fractions: fracs.length, stacked: stacked,
    blocks: document.querySelectorAll('math[display="block"]').length});
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "profile"
    run = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return run.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_math(site: Path, tmp_path: Path) -> None:
    page = site / "maths.html"
    probe = site / "_mathml_probe.html"  # beside the page, so its CSS loads the same way
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="mathml-probe">(.*?)</pre>', dom)
    assert found, "the probe did not run"
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["mathml"], result
    assert result["blocks"] >= len(derivation.EQUATIONS), result
    assert result["fractions"] >= 1 and result["stacked"] == result["fractions"], result
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "maths.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, "--window-size=1100,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000
