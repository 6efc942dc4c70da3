"""Build the documentation site and check what a reader gets.

The site is built once per session with the same flags as ``nox -s docs``
(``-W --keep-going -n``: any warning fails). Then: no page loads anything
from the network; the maths page carries the MathML of exactly the
expressions in ``docs/derivation.py``; every code example is a doctest; and
headless Chromium lays the math out as real two-dimensional formulas (a
fraction's numerator above its denominator), with a screenshot kept under
``docs/_build/screenshots/`` for a person to look at. At 1280 px, as a
reader sees it (scrollbars shown): no table is wider than its container, no
display equation's box scrolls, and every figure's smallest text is shown at
least as large as the body text.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import struct
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

#: Sphinx 9's own napoleon and myst-parser use APIs that Sphinx 11 removes; not this project's code.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::sphinx.deprecation.RemovedInSphinx11Warning:sphinx.ext.napoleon.docstring"
    ),
    pytest.mark.filterwarnings("ignore::sphinx.deprecation.RemovedInSphinx11Warning:myst_parser.mocking"),
]


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
    import corrmom_ref.serializers.chainer_layout
    import corrmom_ref.torch
    import corrmom_ref.torch.distributed

    public = (
        corrmom_ref,
        corrmom_ref.optimizer_hooks,
        corrmom_ref.serializers,
        corrmom_ref.lr_policy,
        corrmom_ref.flat,
        corrmom_ref.fast_paths,
        corrmom_ref.distributed,
        corrmom_ref.torch,
        corrmom_ref.torch.distributed,
        corrmom_ref.serializers.chainer_layout,
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


#: Runs in a page at 1280 px: what overflows, what scrolls, how large figures and text are shown.
LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const article = document.querySelector('article');
  const body = getComputedStyle(article.querySelector('p'));
  const tables = [...article.querySelectorAll('table')].map(t => {
    const box = t.parentElement;
    return {caption: (t.closest('section') || article).id, width: t.getBoundingClientRect().width,
            box: box.clientWidth, box_scroll: box.scrollWidth,
            tallest_row: Math.max(...[...t.rows].map(r => r.getBoundingClientRect().height))};
  });
  const equations = [...article.querySelectorAll('div.math')].map(d => ({
    id: (d.closest('[id]') || article).id, scroll_h: d.scrollHeight, client_h: d.clientHeight,
    scroll_w: d.scrollWidth, client_w: d.clientWidth}));
  const images = [...article.querySelectorAll('img')].map(i => ({
    src: decodeURIComponent(i.src.split('/').pop()), natural: i.naturalWidth,
    shown: i.getBoundingClientRect().width}));
  const out = document.createElement('pre');
  out.id = 'layout-probe';
  out.textContent = JSON.stringify({body_px: parseFloat(body.fontSize), line_px: parseFloat(body.lineHeight),
                                    tables, equations, images});
  document.body.appendChild(out);
});
</script>"""

#: Pages with tables, equations or figures.
LAID_OUT = ["conformance", "maths", "machinery", "benchmark", "distributed", "quirks", "backends"]


def png_text(path: Path) -> dict[str, str]:
    """The tEXt entries of a PNG file."""
    data, found, at = path.read_bytes(), {}, 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return found


def layout(site: Path, tmp_path: Path, name: str) -> dict:
    page = site / f"{name}.html"
    probe = site / f"_layout_probe_{name}.html"  # beside the page, so its CSS and images load the same way
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8"
    )
    dom = chromium(
        tmp_path, "--window-size=1280,900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()
    )
    probe.unlink()
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom)
    assert found, f"the layout probe did not run on {name}.html"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("name", LAID_OUT)
def test_page_reads_at_1280_px(site: Path, tmp_path: Path, name: str) -> None:
    result = layout(site, tmp_path, name)
    for table in result["tables"]:
        assert table["width"] <= table["box"] + 0.5 and table["box_scroll"] <= table["box"], (
            f"{name}.html: a table in #{table['caption']} is wider than its container: {table}"
        )
    for eq in result["equations"]:
        assert eq["scroll_h"] <= eq["client_h"] and eq["scroll_w"] <= eq["client_w"], (
            f"{name}.html: the box of equation #{eq['id']} scrolls: {eq}"
        )
    for image in result["images"]:
        recorded = png_text(site / "_images" / image["src"]).get("Smallest text px")
        assert recorded is not None, (
            f"{name}.html: {image['src']} does not record its text size (figures/page.py)"
        )
        shown = float(recorded) * image["shown"] / image["natural"]
        assert shown >= result["body_px"] - 0.01, (
            f"{name}.html: the smallest text of {image['src']} is shown {shown:.1f} px tall, "
            f"the body text {result['body_px']} px ({image['natural']} px image shown {image['shown']:.0f} px wide)"
        )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_conformance_matrix_reads_at_1280_px(site: Path, tmp_path: Path) -> None:
    """One table per family, rows at most three lines tall; a screenshot of the page for a person."""
    result = layout(site, tmp_path, "conformance")
    matrix = [t for t in result["tables"] if t["caption"] == "current-results"]
    if "_generated/conformance-matrix.md` does not exist" in (site / "conformance.html").read_text(
        encoding="utf-8"
    ):
        pytest.skip("no conformance matrix in this build")
    assert len(matrix) >= 2, f"the matrix is not split into tables: {result['tables']}"
    for table in matrix:
        assert table["tallest_row"] <= 3 * result["line_px"] + 16, (
            f"a matrix row wraps into a tall block: {table}"
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, height in (("conformance", 9000), ("benchmark", 2600)):
        shot = SCREENSHOTS / f"{name}-1280.png"
        shot.unlink(missing_ok=True)
        chromium(
            tmp_path, f"--window-size=1280,{height}", f"--screenshot={shot}", (site / f"{name}.html").as_uri()
        )
        assert shot.exists() and shot.stat().st_size > 20_000
