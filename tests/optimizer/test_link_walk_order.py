"""Links walk their parameters in Chainer's order, also after children are added between walks."""

from __future__ import annotations

import copy
import pickle

import numpy as np

import corrmom_ref as cr


def _param() -> cr.Parameter:
    return cr.Parameter(np.zeros(1))


def test_own_parameters_sorted_first_then_each_child_link_sorted() -> None:
    model = cr.Link(z=_param(), b=cr.Link(y=_param(), x=_param()), a=cr.Link(w=_param()), c=_param())
    assert [path for path, _ in model.namedparams()] == ["/c", "/z", "/a/w", "/b/x", "/b/y"]
    assert list(model.params()) == [param for _, param in model.namedparams()]


def test_a_walk_sees_children_added_after_an_earlier_walk_at_any_depth() -> None:
    inner = cr.Link(b=_param())
    model = cr.Link(outer=cr.Link(inner=inner))
    assert [path for path, _ in model.namedparams()] == ["/outer/inner/b"]
    late = _param()
    inner.add("a", late)  # the model's own children are unchanged: only the grandchild changed
    assert [path for path, _ in model.namedparams()] == ["/outer/inner/a", "/outer/inner/b"]
    assert next(model.params()) is late
    model.add("top", _param())
    assert next(model.namedparams())[0] == "/top"


def test_a_copied_or_unpickled_link_walks_its_own_parameters() -> None:
    """A walk cached before the copy belongs to the original; the copy walks its own parameters,
    and a walk that was stale when pickled (a child added after it) is not reused."""
    inner = cr.Link(b=_param())
    model = cr.Link(inner=inner)
    list(model.namedparams())  # cache a walk
    inner.add("a", _param())  # ... that is now stale
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        pairs = list(copied.namedparams())
        assert [path for path, _ in pairs] == ["/inner/a", "/inner/b"]
        assert pairs[0][1] is copied.inner.a and pairs[0][1] is not inner.a
