"""How the documentation's figures are sized: drawn at the size they are shown, text as large as the page's.

The pages are read at 1280 px, where the theme's text column is about 736 CSS
px wide and body text is 16 px. A figure drawn at 96 dots per inch is one
image pixel per CSS pixel, so one 7.5 in wide (720 px) is shown unscaled, and
text of 12 pt is 12 / 72 * 96 = 16 px on the page: as large as the body text.
:func:`save` records the smallest text of the figure, in image pixels, in the
PNG (tEXt ``Smallest text px``), so the site test can check the displayed
size: that value times the shown width over the image width.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: One image pixel per CSS pixel.
DPI = 96
#: The widest figure shown unscaled in the text column (720 px).
WIDTH_IN = 7.5
#: Every text of a figure: 12 pt = 16 px at DPI.
FONT_PT = 12.0

#: Matplotlib settings for a page figure (``with style(): ...``).
RC: dict[str, Any] = {
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT,
    "ytick.labelsize": FONT_PT,
    "legend.fontsize": FONT_PT,
    "figure.titlesize": FONT_PT,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}

#: The PNG text key that holds the smallest text height in image pixels.
KEY = "Smallest text px"


@contextmanager
def style() -> Iterator[None]:
    """Draw inside this: the page's font sizes and resolution."""
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        yield


def smallest_text_px(fig: Any) -> float:
    """The smallest font size among the figure's visible, non-empty texts, in image pixels."""
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels get their text when drawn
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_window_extent().width > 0
    ]
    return min(sizes) * DPI / 72


def save(fig: Any, path: str | Path) -> None:
    """Write ``fig`` at :data:`DPI` with its smallest text size in the PNG's metadata."""
    fig.savefig(path, dpi=DPI, metadata={KEY: f"{smallest_text_px(fig):.2f}"})
