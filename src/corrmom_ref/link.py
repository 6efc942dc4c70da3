"""Parameters and links: the minimal containers an optimizer walks.

They follow Chainer's protocol, so code written for ``chainer.Link`` reads the
same: a :class:`Link` yields its own parameters sorted by name, then those of
its child links sorted by name, with paths such as ``/l1/W``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace

from corrmom_ref.serializers.base import AbstractSerializer, Deserializer
from corrmom_ref.serializers.transfer import convert_like

if TYPE_CHECKING:  # update_rule imports this module
    from corrmom_ref.update_rule import UpdateRule

__all__ = ["Link", "Parameter"]


class Parameter:
    """An array to optimise, with its gradient and update rule.

    Args:
        array: The parameter's value, an array of any Array API backend, or
            ``None`` for a parameter not initialised yet (Chainer's lazy
            initialisation: assign :attr:`array` later). Until then
            optimizers skip it as Chainer does (see ``docs/machinery.md``).
        name: A name used in messages (links name their parameters by path).
        dtype: The dtype a parameter not initialised yet will have (Chainer
            takes it from the initializer); ignored once :attr:`array` is set.

    Attributes:
        array: The parameter's value (replaced, not mutated, by backends
            whose arrays are immutable); ``None`` until initialised.
        name: The name given at construction, or ``None``; registering the
            parameter in a link (:meth:`Link.add`) renames it to its
            attribute name there, as Chainer's ``init_scope`` does (a
            parameter registered twice carries the last name).
        grad: The gradient, an array like ``array`` or ``None`` (cleared).
        update_rule: The rule an optimizer set up for this parameter.
        loss_scale: The factor the current ``grad`` is scaled by (set by a
            loss's ``backward(loss_scale=...)``); the update rule divides the
            gradient by it before updating. ``None`` means unscaled.
    """

    def __init__(self, array: Any = None, name: str | None = None, *, dtype: Any = None) -> None:
        if array is not None:
            array_namespace(array)  # raises TypeError for a non-array
        self.array = array
        self.name = name
        self._declared_dtype = dtype
        self.grad: Any = None
        self.update_rule: UpdateRule | None = None
        self.loss_scale: float | None = None

    def __repr__(self) -> str:
        if self.array is None:
            return f"Parameter(name={self.name!r}, uninitialized, dtype={self.dtype})"
        return f"Parameter(name={self.name!r}, shape={tuple(self.shape)}, dtype={self.dtype})"

    @property
    def data(self) -> Any:
        """Alias of :attr:`array` (Chainer's older name)."""
        return self.array

    @data.setter
    def data(self, value: Any) -> None:
        self.array = value

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the parameter's array."""
        return tuple(self.array.shape)

    @property
    def is_initialized(self) -> bool:
        """Whether the parameter has an array (Chainer's name)."""
        return self.array is not None

    @property
    def dtype(self) -> Any:
        """The dtype of the parameter's array; before it has one, the declared ``dtype`` (or ``None``)."""
        if self.array is None:
            return self._declared_dtype
        return self.array.dtype

    @property
    def xp(self) -> Any:
        """The Array API namespace of the parameter's array."""
        return array_namespace(self.array)

    def cleargrad(self) -> None:
        """Forget the gradient (``grad = None``)."""
        self.grad = None

    def zerograd(self) -> None:
        """Set the gradient to zeros of the parameter's shape, dtype and device."""
        self.grad = self.xp.zeros_like(self.array)

    def update(self) -> None:
        """Update the array with its update rule, if it has one."""
        if self.update_rule is not None:
            self.update_rule.update(self)


class _Structure:
    """Which link trees are current: :meth:`Link.add` replaces :attr:`version` with a new object.

    A cached walk remembers the version it was built under and is reused only
    while that very object is current. A new object (rather than a count) keeps
    a walk that traveled through pickle or ``copy.deepcopy`` from ever matching,
    even in another process that has seen the same number of changes.
    """

    version = object()


_STRUCTURE = _Structure()


class Link:
    """A tree of named parameters.

    Args:
        **children: :class:`Parameter` or :class:`Link` objects, by name. They
            are reachable as attributes (``link.W``).

    >>> import numpy as np
    >>> model = Link(l1=Link(W=Parameter(np.zeros(2)), b=Parameter(np.zeros(1))))
    >>> [path for path, _ in model.namedparams()]
    ['/l1/W', '/l1/b']
    """

    def __init__(self, **children: Parameter | Link) -> None:
        self._params: dict[str, Parameter] = {}
        self._links: dict[str, Link] = {}
        for name, child in children.items():
            self.add(name, child)

    def add(self, name: str, child: Parameter | Link) -> None:
        """Register ``child`` under ``name`` (a parameter is renamed ``name``, as in Chainer)."""
        if not name.isidentifier():
            raise ValueError(f"child name must be an identifier, got {name!r}")
        if name in self._params or name in self._links or hasattr(type(self), name):
            raise KeyError(f"name {name!r} is already used in this link")
        _STRUCTURE.version = object()
        if isinstance(child, Parameter):
            child.name = name  # Chainer renames on registration, whatever the name was
            self._params[name] = child
        elif isinstance(child, Link):
            self._links[name] = child
        else:
            raise TypeError(f"child {name!r} must be a Parameter or a Link, got {type(child).__name__}")

    def __getattr__(self, name: str) -> Any:
        for table in ("_params", "_links"):
            children = self.__dict__.get(table, {})
            if name in children:
                return children[name]
        raise AttributeError(f"{type(self).__name__} has no child {name!r}")

    def namedparams(self, include_uninit: bool = True) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(path, parameter)`` pairs in Chainer's order.

        Own parameters sorted by name first, then each child link's parameters
        (children sorted by name), with ``/``-joined paths. With
        ``include_uninit=False`` parameters whose array is ``None`` are left out.
        """
        if include_uninit:
            return iter(self._walk())
        return ((path, param) for path, param in self._walk() if param.array is not None)

    def params(self, include_uninit: bool = True) -> Iterator[Parameter]:
        """Yield the parameters in :meth:`namedparams` order (see there for ``include_uninit``)."""
        return (param for _, param in self.namedparams(include_uninit))

    def _walk(self) -> tuple[tuple[str, Parameter], ...]:
        """The ``(path, parameter)`` pairs, built once per change of any link's children.

        An optimizer walks its target several times per step; the cache
        saves sorting the names and joining the paths again each time, which
        shows on many small parameters (``benchmarks/RESULTS.md``, "Link walk
        cache"). The pairs are rebuilt after any :meth:`add` anywhere (see
        :class:`_Structure`).
        """
        cached = self.__dict__.get("_walked")
        if cached is not None and cached[0] is _STRUCTURE.version:
            return cached[1]
        pairs = [("/" + name, self._params[name]) for name in sorted(self._params)]
        for name in sorted(self._links):
            pairs.extend(("/" + name + path, param) for path, param in self._links[name]._walk())
        walked = tuple(pairs)
        self.__dict__["_walked"] = (_STRUCTURE.version, walked)
        return walked

    def cleargrads(self) -> None:
        """Clear every parameter's gradient."""
        for param in self.params():
            param.cleargrad()

    def zerograds(self) -> None:
        """Set every initialised parameter's gradient to zeros."""
        for param in self.params(include_uninit=False):
            param.zerograd()

    def serialize(self, serializer: AbstractSerializer) -> None:
        """Save or load every parameter's array under its name (Chainer's keys).

        Loading validates every array first and assigns only when all are
        valid, so a failed load changes nothing. A parameter not initialised
        yet is not saved (Chainer writes a pickled ``None``, which an npz
        file holds only with pickles); loading initialises it with the stored
        array when there is one (a NumPy array, as stored), else leaves it
        uninitialised.
        """
        named = list(self.namedparams())
        if not isinstance(serializer, Deserializer):
            for path, param in named:
                if param.array is not None:
                    _child(serializer, path)(path.rsplit("/", 1)[1], param.array)
            return
        loaded = []
        for path, param in named:
            node, key = _child(serializer, path), path.rsplit("/", 1)[1]
            if param.array is None:
                loaded.append((param, _initial_array(node, key)))
                continue
            value = node(key, None)
            if value is not None:
                value = convert_like(value, param.array, what=f"parameter {path}")
            loaded.append((param, value))
        for param, value in loaded:
            if value is not None:
                param.array = value


def _initial_array(serializer: AbstractSerializer, key: str) -> Any:
    """The stored array for an uninitialised parameter (a NumPy copy), or ``None`` if there is none."""
    try:
        value = serializer(key, None)
    except KeyError:
        return None
    if value is None:
        return None
    import numpy

    read = getattr(value, "read", None)
    return numpy.array(read() if callable(read) else value, copy=True)


def _child(serializer: AbstractSerializer, path: str) -> AbstractSerializer:
    """The serializer for the link that holds the parameter at ``path``."""
    for part in path.strip("/").split("/")[:-1]:
        serializer = serializer[part]
    return serializer
