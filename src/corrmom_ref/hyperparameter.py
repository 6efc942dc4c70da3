"""Hyperparameters with parent fallback, as in Chainer.

An optimizer owns a root :class:`Hyperparameter`; every update rule owns a
child whose parent is that root. Reading an entry the child does not hold falls
back to the parent, writing an entry sets it on the child only. Changing
``optimizer.lr`` therefore changes the learning rate of every parameter that
has no override of its own, while ``param.update_rule.hyperparam.lr = x``
overrides it for one parameter.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

__all__ = [
    "Hyperparameter",
    "HyperparameterProxy",
    "quick_nonnegative_floats",
    "read_entries",
    "read_entry",
    "sole_source",
    "write_count",
]

#: Entries written or deleted so far, on any :class:`Hyperparameter` of this process (see :func:`write_count`).
_writes = 0

#: The largest finite float: ``0.0 <= x <= FLOAT_MAX`` is false for NaN, infinities and negatives.
FLOAT_MAX = 1.7976931348623157e308


class Hyperparameter:
    """A set of named hyperparameter entries with an optional parent.

    Args:
        parent: The hyperparameter object entries fall back to.

    >>> root = Hyperparameter()
    >>> root.lr = 0.1
    >>> child = Hyperparameter(root)
    >>> child.lr
    0.1
    >>> child.lr = 0.5
    >>> (root.lr, child.lr)
    (0.1, 0.5)
    >>> child
    Hyperparameter(lr=0.5)
    """

    def __init__(self, parent: Hyperparameter | None = None) -> None:
        self._parent = parent

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed: fall back to the parent.
        if "_parent" not in self.__dict__:
            raise AttributeError("_parent is not set up yet")
        parent = self._parent
        if parent is None:
            raise AttributeError(f"hyperparameter {name!r} is not set")
        return getattr(parent, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Declared so that type checkers accept arbitrary entries; counted for write_count().
        global _writes
        _writes += 1
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        global _writes
        _writes += 1
        object.__delattr__(self, name)

    def __repr__(self) -> str:
        entries = self.get_dict()
        body = ", ".join(f"{key}={entries[key]}" for key in sorted(entries))
        return f"Hyperparameter({body})"

    @property
    def parent(self) -> Hyperparameter | None:
        """The hyperparameter object this one falls back to."""
        return self._parent

    def get_dict(self) -> dict[str, Any]:
        """All entries visible from this object: the parent's, then its own."""
        entries = {} if self._parent is None else self._parent.get_dict()
        entries.update((k, v) for k, v in self.__dict__.items() if k != "_parent")
        return entries


def write_count() -> int:
    """How many entries were set or deleted so far on any :class:`Hyperparameter` of this process.

    Creating one counts too (it sets its parent), so while the count stays
    put every plain :class:`Hyperparameter` holds the same entries (the
    same objects: an entry mutated in place, a 0-d array, is not seen) and
    no new one was made. Writes that bypass ``setattr`` (``vars(h)[name] =
    ...``, unpickling) are not counted.

    >>> before = write_count()
    >>> Hyperparameter().lr = 0.1
    >>> write_count() - before
    2
    """
    return _writes


def read_entry(hyperparam: Hyperparameter, name: str) -> Any:
    """``hyperparam.<name>``, parent fallback included, for the per-parameter hot path.

    Equal to ``getattr(hyperparam, name)``. Plain attribute access reaches the
    parent through a failed lookup on the child (an ``AttributeError`` raised
    and caught per read); this walks the chain of entry dictionaries instead
    (the saving: ``benchmarks/RESULTS.md``, "Measurements behind the
    machinery's design choices").
    Subclasses of :class:`Hyperparameter` (which may compute entries) are read
    with ``getattr``.
    """
    node: Hyperparameter | None = hyperparam
    while type(node) is Hyperparameter:
        entries = node.__dict__
        if name in entries:
            return entries[name]
        node = entries["_parent"]
    if node is None:
        raise AttributeError(f"hyperparameter {name!r} is not set")
    return getattr(node, name)


def read_entries(hyperparam: Hyperparameter, first: str, second: str) -> tuple[Any, Any]:
    """``(read_entry(hyperparam, first), read_entry(hyperparam, second))``, the common case read once.

    The common case is a rule's child holding no entry of its own under a
    plain parent that holds both: then both come from the parent's entry
    dictionary in one lookup each; anything else is read by :func:`read_entry`.
    """
    own = hyperparam.__dict__
    if len(own) == 1 and type(hyperparam) is Hyperparameter:
        parent = own["_parent"]
        if type(parent) is Hyperparameter:
            entries = parent.__dict__
            if first in entries and second in entries:
                return entries[first], entries[second]
    return read_entry(hyperparam, first), read_entry(hyperparam, second)


def sole_source(hyperparam: Hyperparameter) -> Hyperparameter | None:
    """The parent whose entries ``hyperparam`` reads unchanged, or ``None``.

    That is the parent of a plain :class:`Hyperparameter` holding no entry of
    its own: every read of it is a read of the parent, so two such children of
    one parent read the same values at any moment.
    """
    own = hyperparam.__dict__
    return own["_parent"] if len(own) == 1 and type(hyperparam) is Hyperparameter else None


def quick_nonnegative_floats(hyperparam: Hyperparameter, names: tuple[str, ...]) -> bool:
    """A quick test that every entry in ``names`` reads as a finite Python ``float`` >= 0.

    ``True`` is always right: each entry is read from the first dictionary
    that holds it, as :func:`read_entry` reads it, and is a ``float`` in
    ``[0, FLOAT_MAX]``. ``False`` may be wrong: the test looks at
    ``hyperparameter`` and its parent only, both plain :class:`Hyperparameter`
    objects, and accepts only Python floats (NumPy scalars and integers are
    valid too), so a caller that must be exact looks closer after a ``False``
    (:meth:`corrmom_ref.UpdateRule.check_hyperparameters`).
    """
    if type(hyperparam) is not Hyperparameter:
        return False
    own = hyperparam.__dict__
    parent = own["_parent"]
    if type(parent) is not Hyperparameter:
        return False
    entries = parent.__dict__ if len(own) == 1 else {**parent.__dict__, **own}  # own first
    for name in names:
        value = entries.get(name)
        if type(value) is not float or not 0.0 <= value <= FLOAT_MAX:
            return False
    return True


T = TypeVar("T")


class HyperparameterProxy(Generic[T]):
    """A class attribute that aliases ``self.hyperparam.<name>``.

    ``lr = HyperparameterProxy("lr")`` in an optimizer class makes
    ``optimizer.lr`` read and write ``optimizer.hyperparam.lr``.
    """

    def __init__(self, attr_name: str) -> None:
        self._attr_name = attr_name
        self.__doc__ = f"Alias to ``self.hyperparam.{attr_name}``."

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> HyperparameterProxy[T]: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.hyperparam, self._attr_name)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: T) -> None:
        setattr(obj.hyperparam, self._attr_name, value)  # type: ignore[attr-defined]
