r"""The equations of the maths page, as sympy expressions: their single source.

The maths page renders these expressions through the ``derivation``
directive (``_ext/derivation_directive.py``), and
``tests/docs/test_derivation.py`` proves with sympy every claim the page makes
about them, so the page and the proof cannot drift apart. The expressions are
built unevaluated so that they print in the paper's term order; ``.doit()``
gives the ordinary sympy expression.

Symbols follow Goyal et al. (2017), section 3: weights :math:`w`, gradient
:math:`g_t`, momentum :math:`m`, learning rates :math:`\eta_t` and
:math:`\eta_{t+1}`, the eq. (9) buffer :math:`u` and the eq. (10) buffer
:math:`v`. Chainer's ``CorrectedMomentumSGD`` stores :math:`\hat v = -u`.
"""

from __future__ import annotations

import sympy as sp


def _add(*terms: sp.Expr) -> sp.Expr:
    return sp.Add(*terms, evaluate=False)


def _mul(*factors: sp.Expr) -> sp.Expr:
    return sp.Mul(*factors, evaluate=False)


def _neg(term: sp.Expr) -> sp.Expr:
    return _mul(sp.Integer(-1), term)


def _eq(lhs: sp.Expr, rhs: sp.Expr) -> sp.Eq:
    return sp.Eq(lhs, rhs, evaluate=False)


m = sp.Symbol("m", nonnegative=True)
g_t, w_t, w_t1 = sp.symbols("g_t w_t w_{t+1}", real=True)
eta_t, eta_t1 = sp.symbols(r"\eta_t \eta_{t+1}", positive=True)
u_t, u_t1 = sp.symbols("u_t u_{t+1}", real=True)
v_t, v_t1 = sp.symbols("v_t v_{t+1}", real=True)
vhat_t, vhat_t1 = sp.symbols(r"\hat{v}_t \hat{v}_{t+1}", real=True)

#: Eq. (9): the form of Chainer's CorrectedMomentumSGD, PyTorch and optax.
EQ9_U = _eq(u_t1, _add(_mul(m, u_t), g_t))
EQ9_W = _eq(w_t1, _add(w_t, _neg(_mul(eta_t1, u_t1))))
#: Eq. (10): the form of Chainer's MomentumSGD, Keras and Caffe.
EQ10_V = _eq(v_t1, _add(_mul(m, v_t), _mul(eta_t1, g_t)))
EQ10_W = _eq(w_t1, _add(w_t, _neg(v_t1)))
#: The substitution that links the two forms.
SUBSTITUTION = _eq(v_t, _mul(eta_t, u_t))
#: Eq. (10) with the momentum correction factor eta_{t+1} / eta_t.
EQ10_CORRECTED_V = _eq(
    v_t1, _add(_mul(m, _mul(eta_t1, sp.Pow(eta_t, -1, evaluate=False)), v_t), _mul(eta_t1, g_t))
)
#: Chainer's CorrectedMomentumSGD: eq. (9) with the buffer's sign flipped.
CHAINER_V = _eq(vhat_t1, _add(_mul(m, vhat_t), _neg(g_t)))
CHAINER_W = _eq(w_t1, _add(w_t, _mul(eta_t1, vhat_t1)))
#: Uncorrected eq. (10), started from v_t = eta_t u_t, misses eta_{t+1} u_{t+1} by this.
GAP = _eq(_add(v_t1, _neg(_mul(eta_t1, u_t1))), _mul(m, _add(eta_t, _neg(eta_t1)), u_t))

#: Every expression the page renders, by the name the directive takes.
EQUATIONS: dict[str, sp.Eq] = {
    "eq9-u": EQ9_U,
    "eq9-w": EQ9_W,
    "eq10-v": EQ10_V,
    "eq10-w": EQ10_W,
    "substitution": SUBSTITUTION,
    "eq10-corrected-v": EQ10_CORRECTED_V,
    "chainer-v": CHAINER_V,
    "chainer-w": CHAINER_W,
    "gap": GAP,
}


def latex(name: str) -> str:
    """The LaTeX of equation ``name``, in the term order it was written in."""
    return sp.latex(EQUATIONS[name], order="none")
