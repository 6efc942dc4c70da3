"""tests/skip_summary.py: one line per skip reason with its count, unless -rs asks for the list."""

from __future__ import annotations

pytest_plugins = ["pytester"]

SKIPS = """
import pytest

@pytest.mark.parametrize("i", range(3))
def test_a(i):
    pytest.skip("backend has no float16")

def test_b():
    pytest.skip("backend has no float16")

@pytest.mark.skip(reason="needs a GPU")
def test_c():
    pass

def test_d():
    pass
"""


def test_counts_per_reason(pytester):
    pytester.makepyfile(SKIPS)
    result = pytester.runpytest("-p", "skip_summary", "-rfE")
    result.assert_outcomes(passed=1, skipped=5)
    result.stdout.fnmatch_lines(
        ["*skipped, by reason*", "    4  backend has no float16", "    1  needs a GPU"]
    )
    result.stdout.no_fnmatch_line("SKIPPED*")


def test_rs_lists_each_and_adds_nothing(pytester):
    pytester.makepyfile(SKIPS)
    result = pytester.runpytest("-p", "skip_summary", "-rs")
    result.stdout.fnmatch_lines(["SKIPPED*needs a GPU"])
    result.stdout.no_fnmatch_line("*skipped, by reason*")
