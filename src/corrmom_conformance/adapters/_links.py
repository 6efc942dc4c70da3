"""Building a tree of links from ``{'l1/W': array}`` paths, for any Link class."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def nest(paths: Mapping[str, Any]) -> dict[str, Any]:
    """``{'l1/W': a, 'b': c}`` -> ``{'l1': {'W': a}, 'b': c}``."""
    tree: dict[str, Any] = {}
    for path, value in paths.items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def build(
    tree: Mapping[str, Any],
    make_param: Callable[[Any], Any],
    make_link: Callable[[dict[str, Any]], Any],
    prefix: str = "",
    found: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build links bottom-up; return the root and ``{path: parameter}``."""
    found = {} if found is None else found
    children: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            children[name], _ = build(value, make_param, make_link, prefix + name + "/", found)
        else:
            children[name] = found[prefix + name] = make_param(value)
    return make_link(children), found
