"""Every ``pip install`` line that the README and the docs show works, in a fresh virtualenv.

The package is on no index, so a line such as ``pip install "corrmom-ref[optax]"``
cannot work; the docs install from a checkout (``pip install ".[optax]"``) or a
built wheel. Each line is run from a copy of the checkout as pip's
``--dry-run`` (the whole resolution, every requirement found, nothing
installed) in a virtualenv made for this test. The one line that names
PyTorch's CPU index is not run: that index is not reachable here (the line
is checked to install only ``torch``). Needs pip to reach PyPI or its cache.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.test_installed_wheel import copy_checkout

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the packaging tests run once, in the NumPy leg",
)


#: An install command as the pages show one: a code span or a line of a code block that starts with it.
COMMAND = re.compile(r"^(?:python3? -m )?pip install (?P<args>[^`#&\n]+)")


def install_lines() -> list[tuple[str, str]]:
    """``(page, arguments)`` of every distinct ``pip install`` command on the pages (code spans and
    lines of code blocks that are one; prose that quotes a message is not), first page first."""
    found: list[tuple[str, str]] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        candidates = [line.strip() for block in blocks for line in block.splitlines()]
        candidates += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for candidate in candidates:
            match = COMMAND.match(candidate)
            arguments = match.group("args").strip() if match else None
            if arguments and arguments not in [a for _, a in found]:  # shown on several pages: runs once
                found.append((page.name, arguments))
    return found


LINES = install_lines()


def test_the_pages_show_install_lines():
    assert len(LINES) >= 10, LINES  # the extraction still finds them
    named = [args for _, args in LINES if "corrmom-ref" in args or "corrmom_ref" in args.split("[")[0]]
    by_name = [a for a in named if not a.startswith(('"dist/', '"../corrmom-ref['))]
    assert not by_name, f"install lines naming the package as if it were on an index: {by_name}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A virtualenv made for these tests, and a copy of the checkout with a built wheel in ``dist/``."""
    base = tmp_path_factory.mktemp("install-lines")
    source = copy_checkout(base / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", "dist", "."],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python", source


@pytest.mark.parametrize(("page", "arguments"), LINES, ids=[f"{p}: {a}" for p, a in LINES])
def test_install_line_resolves_in_a_fresh_virtualenv(page, arguments, fresh):
    python, checkout = fresh
    args = shlex.split(arguments)
    if "--index-url" in args:
        assert [a for a in args if not a.startswith("-") and "://" not in a] == ["torch"], arguments
        pytest.skip("names PyTorch's CPU index, which is not reachable here")
    if any(a.startswith("../corrmom-ref") for a in args):
        assert (ROOT / "tests" / "packaging" / "test_third_party.py").exists()
        pytest.skip("a third party's line, run from its own project beside a checkout: test_third_party.py")
    wheels = [a for a in args if a.startswith("dist/")]
    for wheel in wheels:
        assert (checkout / wheel.split("[")[0]).exists(), (
            f"{page} installs {wheel}, but the wheel built from this checkout is "
            f"{[p.name for p in (checkout / 'dist').iterdir()]}"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--dry-run", "-q", *args],
        cwd=checkout,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{page}: pip install {arguments} failed:\n{done.stderr[-3000:]}"
