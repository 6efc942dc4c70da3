"""The derivation on the maths page, proved with sympy on the page's own expressions.

``docs/derivation.py`` holds every equation the page renders (the
``derivation`` directive prints them); these tests prove each claim the page
makes about them, symbolically and in exact rational arithmetic.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import pytest

sp = pytest.importorskip("sympy")

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path[:0] = [str(DOCS), str(DOCS / "figures")]

import derivation as d  # noqa: E402
import schedule  # noqa: E402


def rhs(eq: object) -> object:
    """The evaluated right-hand side of an (unevaluated) equation."""
    return eq.rhs.doit()


def u_next() -> object:
    """u_{t+1} by eq. (9)."""
    return rhs(d.EQ9_U)


def test_the_expressions_are_the_papers() -> None:
    """The unevaluated forms (what the page prints) equal the textbook formulas."""
    assert sp.simplify(rhs(d.EQ9_U) - (d.m * d.u_t + d.g_t)) == 0
    assert sp.simplify(rhs(d.EQ9_W) - (d.w_t - d.eta_t1 * d.u_t1)) == 0
    assert sp.simplify(rhs(d.EQ10_V) - (d.m * d.v_t + d.eta_t1 * d.g_t)) == 0
    assert sp.simplify(rhs(d.EQ10_W) - (d.w_t - d.v_t1)) == 0
    assert sp.simplify(rhs(d.EQ10_CORRECTED_V) - (d.m * d.eta_t1 / d.eta_t * d.v_t + d.eta_t1 * d.g_t)) == 0


def test_constant_rate_keeps_the_substitution() -> None:
    """With eta_{t+1} = eta_t, eq. (10) maps v_t = eta_t u_t to v_{t+1} = eta_{t+1} u_{t+1}."""
    v_next = rhs(d.EQ10_V).subs(d.v_t, rhs(d.SUBSTITUTION)).subs(d.eta_t1, d.eta_t)
    assert sp.simplify(v_next - d.eta_t * u_next()) == 0


def test_corrected_eq10_is_eq9_for_any_rates() -> None:
    """Corrected eq. (10) keeps v = eta u, so it moves w exactly as eq. (9) does."""
    v_next = rhs(d.EQ10_CORRECTED_V).subs(d.v_t, rhs(d.SUBSTITUTION))
    assert sp.simplify(v_next - d.eta_t1 * u_next()) == 0
    w9 = rhs(d.EQ9_W).subs(d.u_t1, u_next())
    w10 = rhs(d.EQ10_W).subs(d.v_t1, v_next)
    assert sp.simplify(w9 - w10) == 0


def test_uncorrected_gap_is_as_stated_and_nonzero_when_the_rate_changes() -> None:
    v_next = rhs(d.EQ10_V).subs(d.v_t, rhs(d.SUBSTITUTION))
    gap = v_next - d.eta_t1 * u_next()
    assert sp.simplify(gap - rhs(d.GAP)) == 0
    assert sp.simplify(gap.subs(d.eta_t1, d.eta_t)) == 0
    assert sp.simplify(gap.subs({d.eta_t: 1, d.eta_t1: 2, d.m: sp.Rational(9, 10), d.u_t: 1})) != 0


def test_chainer_sign_convention_is_eq9() -> None:
    """With vhat = -u, Chainer's update is eq. (9): vhat_{t+1} = -u_{t+1}, same w."""
    vhat_next = rhs(d.CHAINER_V).subs(d.vhat_t, -d.u_t)
    assert sp.simplify(vhat_next + u_next()) == 0
    w_chainer = rhs(d.CHAINER_W).subs(d.vhat_t1, vhat_next)
    assert sp.simplify(w_chainer - rhs(d.EQ9_W).subs(d.u_t1, u_next())) == 0


def test_every_rendered_equation_is_used() -> None:
    """The page renders exactly the expressions proved above (no untested extras)."""
    proved = {
        d.EQ9_U,
        d.EQ9_W,
        d.EQ10_V,
        d.EQ10_W,
        d.SUBSTITUTION,
        d.EQ10_CORRECTED_V,
        d.CHAINER_V,
        d.CHAINER_W,
        d.GAP,
    }
    assert set(d.EQUATIONS.values()) == proved
    page = (DOCS / "maths.md").read_text(encoding="utf-8")
    for name in d.EQUATIONS:
        assert f"```{{derivation}} {name}\n" in page, name


def run_exact(corrected: bool) -> tuple[list[Fraction], list[Fraction]]:
    """Eq. (9) and eq. (10) on the figure's problem and schedule, in exact rationals."""
    rates = [Fraction(schedule.lr_at(s)) for s in range(schedule.STEPS)]
    m = Fraction(schedule.MOMENTUM)
    curv = [Fraction(c) for c in schedule.CURVATURE]
    w9 = [Fraction(x) for x in schedule.W0]
    w10 = list(w9)
    u = [Fraction(0)] * len(w9)
    v = [Fraction(0)] * len(w9)
    for step, eta in enumerate(rates):
        prev = rates[step - 1] if step else eta
        factor = eta / prev if corrected else 1
        for i in range(len(w9)):
            u[i] = m * u[i] + curv[i] * w9[i]
            w9[i] -= eta * u[i]
            v[i] = m * factor * v[i] + eta * curv[i] * w10[i]
            w10[i] -= v[i]
    return w9, w10


def test_exact_trajectories_on_the_figure_schedule() -> None:
    """On the warm-up + step-decay schedule of the figure: corrected eq. (10) == eq. (9)
    exactly, uncorrected eq. (10) differs."""
    w9, w10 = run_exact(corrected=True)
    assert w9 == w10
    w9, w10 = run_exact(corrected=False)
    assert w9 != w10
