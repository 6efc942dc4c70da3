"""The matrix page's Markdown: a legend, one table per family with short heads, full names on hover."""

from __future__ import annotations

import re

from corrmom_conformance.matrix import combine

REPORTS = [
    {
        "impl": "ref",
        "version": "0.1.0",
        "backend": "numpy 2.4.6 + numba 0.68.1",
        "counts": {"pass": 3, "not applicable": 1},
        "entries": [
            {"check": "test_hooks.py::test_removed_hook_is_not_called", "outcome": "pass"},
            {"check": "test_equations.py::test_zero_initial_state[a]", "outcome": "pass"},
            {"check": "test_equations.py::test_zero_initial_state[b]", "outcome": "pass"},
            {
                "check": "test_equations.py::test_float16_with_fp32_master",
                "outcome": "not applicable",
                "reason": "lacks capability float16",
            },
        ],
    },
    {
        "impl": "torch",
        "version": "2.13.0",
        "backend": "torch:cpu",
        "counts": {"pass": 1, "expected deviation": 1},
        "entries": [
            {
                "check": "test_equations.py::test_zero_initial_state[a]",
                "outcome": "expected deviation",
                "reason": "buffer starts at the first gradient",
            },
            {"check": "test_equations.py::test_zero_initial_state[b]", "outcome": "pass"},
        ],
    },
]


def _rows(text: str, title: str) -> list[str]:
    block = text.split(f"**{title}**", 1)[1].split("\n\n", 2)[1]
    return block.splitlines()


def test_one_table_per_family_with_short_heads():
    text = combine(REPORTS)
    equations, hooks = _rows(text, "Equations"), _rows(text, "Hooks")
    heads = equations[0]
    assert '<abbr title="ref 0.1.0 on numpy 2.4.6 + numba 0.68.1">ref<br>numba</abbr>' in heads
    assert '<abbr title="torch 2.13.0 on torch:cpu">torch</abbr>' in heads
    assert len(equations) == 2 + 2 and len(hooks) == 2 + 1  # head, rule, one row per check
    shown = re.sub(r"<[^>]+>", " ", heads)
    assert max(len(word) for word in shown.split()) <= len("chainer")


def test_cells_fold_parametrisations_and_checks_are_words_with_full_ids_on_hover():
    rows = _rows(combine(REPORTS), "Equations")
    (zero,) = [r for r in rows if "zero initial state" in r]
    assert '<abbr title="test_equations.py::test_zero_initial_state">zero initial state</abbr>' in zero
    assert zero.endswith("| ✓ | dev / ✓ |")
    (fp16,) = [r for r in rows if "float16" in r]
    assert fp16.endswith("| n/a | · |")  # torch never ran it


def test_legend_and_reasons():
    text = combine(REPORTS)
    assert "| torch | torch 2.13.0 on torch:cpu | 1 pass, 1 expected deviation |" in text.replace(
        '<abbr title="torch 2.13.0 on torch:cpu">torch</abbr>', "torch"
    )
    assert (
        "- torch 2.13.0 on torch:cpu: expected deviation (buffer starts at the first gradient): "
        "`test_equations::test_zero_initial_state`"
    ) in text


def test_a_hyphenated_implementation_breaks_after_its_dash_in_the_tables_only():
    """``ref-torch`` is two short lines in a family table's head, one word in the legend."""
    report = {
        "impl": "ref-torch",
        "version": "x",
        "backend": "torch:cpu",
        "counts": {"pass": 1},
        "entries": [{"check": "test_hooks.py::test_removed_hook_is_not_called", "outcome": "pass"}],
    }
    text = combine([*REPORTS, report])
    legend = next(line for line in text.splitlines() if line.startswith("| <abbr") and "ref-torch x" in line)
    assert ">ref-torch</abbr>" in legend
    head = next(line for line in text.splitlines() if line.startswith("| check |"))
    assert ">ref-<br>torch</abbr>" in head
