"""hyperparameter.quick_nonnegative_floats: its True is always right; it is True in the common case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import corrmom_ref as cr
from corrmom_ref._validation import check_nonnegative_finite
from corrmom_ref.hyperparameter import quick_nonnegative_floats, read_entries, read_entry, sole_source

NAMES = ("lr", "momentum")
MISSING = object()

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 3),
    st.booleans(),
    st.floats(0, 10).map(np.float32),
    st.just("0.1"),
    st.just(MISSING),
)


def chain(
    parent_values: dict[str, object], own_values: dict[str, object], computed: bool
) -> cr.Hyperparameter:
    """A rule's hyperparameter under a parent (a subclass with a computed ``lr`` when ``computed``)."""

    class Computed(cr.Hyperparameter):
        @property
        def lr(self) -> float:
            return 0.5

    parent = Computed() if computed else cr.Hyperparameter()
    for name, value in parent_values.items():
        if value is not MISSING and not (computed and name == "lr"):
            setattr(parent, name, value)
    child = cr.Hyperparameter(parent)
    for name, value in own_values.items():
        if value is not MISSING:
            setattr(child, name, value)
    return child


@given(
    parent=st.fixed_dictionaries({n: values for n in NAMES}),
    own=st.fixed_dictionaries({n: values for n in NAMES}),
    computed=st.booleans(),
)
def test_true_means_every_entry_passes_the_full_check(
    parent: dict[str, object], own: dict[str, object], computed: bool
) -> None:
    hyperparam = chain(parent, own, computed)
    if quick_nonnegative_floats(hyperparam, NAMES):
        for name in NAMES:
            value = read_entry(hyperparam, name)
            assert type(value) is float
            assert check_nonnegative_finite(name, value, "here") == value


@given(
    parent=st.fixed_dictionaries({n: st.floats(0, 1e308) for n in NAMES}),
    own=st.fixed_dictionaries({n: st.floats(0, 1e308) | st.just(MISSING) for n in NAMES}),
)
def test_python_floats_held_by_the_rule_or_its_plain_parent_answer_true(
    parent: dict[str, object], own: dict[str, object]
) -> None:
    assert quick_nonnegative_floats(chain(parent, own, computed=False), NAMES)


def test_each_kind_of_bad_value_answers_false() -> None:
    for bad in (math.nan, math.inf, -1.0, -math.inf, 1, True, np.float64(0.5), "0.1"):
        assert not quick_nonnegative_floats(chain({"lr": 0.1, "momentum": 0.9}, {"lr": bad}, False), NAMES)
        assert not quick_nonnegative_floats(chain({"lr": bad, "momentum": 0.9}, {}, False), NAMES)
    # an entry only a grandparent holds, and a subclass anywhere up the chain: look closer
    grandparent = cr.Hyperparameter()
    grandparent.lr = grandparent.momentum = 0.5
    assert not quick_nonnegative_floats(cr.Hyperparameter(cr.Hyperparameter(grandparent)), NAMES)
    assert not quick_nonnegative_floats(chain({"momentum": 0.9}, {}, computed=True), NAMES)


def test_parent_is_public_and_read_only() -> None:
    root = cr.Hyperparameter()
    child = cr.Hyperparameter(root)
    assert (child.parent, root.parent) == (root, None)
    with pytest.raises(AttributeError):
        child.parent = None  # type: ignore[misc]
    assert child.parent is root and "parent" not in child.get_dict()


def _same(a: object, b: object) -> bool:
    """Equal and of one type (NaN equal to itself)."""
    return type(a) is type(b) and (a == b or (a != a and b != b))


@given(
    parent=st.fixed_dictionaries({n: values for n in NAMES}),
    own=st.fixed_dictionaries({n: values for n in NAMES}),
    computed=st.booleans(),
)
def test_read_entries_reads_what_read_entry_reads(
    parent: dict[str, object], own: dict[str, object], computed: bool
) -> None:
    hyperparam = chain(parent, own, computed)
    try:
        expected = (read_entry(hyperparam, "lr"), read_entry(hyperparam, "momentum"))
    except AttributeError:
        with pytest.raises(AttributeError):
            read_entries(hyperparam, "lr", "momentum")
        return
    got = read_entries(hyperparam, "lr", "momentum")
    assert all(_same(a, b) for a, b in zip(got, expected, strict=True))


def test_sole_source_names_the_parent_only_of_a_child_without_entries() -> None:
    parent = cr.Hyperparameter()
    parent.lr = 0.1
    child = cr.Hyperparameter(parent)
    assert sole_source(child) is parent
    child.lr = 0.2
    assert sole_source(child) is None  # an entry of its own
    assert sole_source(parent) is None  # holds entries (and has no parent)


def test_a_bad_override_under_a_checked_parent_is_still_refused() -> None:
    """The per-pass sharing of a parent's check covers only children that hold nothing of their own."""
    link = cr.Link(a=cr.Parameter(np.zeros(2, np.float32)), b=cr.Parameter(np.zeros(2, np.float32)))
    opt = cr.CorrectedMomentumSGD().setup(link)
    for param in link.params():
        param.grad = np.ones(2, np.float32)
    link.b.update_rule.hyperparam.lr = math.nan
    before = [param.array.copy() for param in link.params()]
    with pytest.raises(ValueError, match="lr"):
        opt.update()
    for param, array in zip(link.params(), before, strict=True):
        np.testing.assert_array_equal(param.array, array)
