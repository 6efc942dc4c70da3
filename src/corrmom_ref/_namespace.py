"""The Array API namespace of an array, looked up once per array type.

``array_api_compat.array_namespace`` inspects its arguments on every call,
which costs microseconds; the namespace depends only on the array's type, so
the hot paths look it up by type.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

_BY_TYPE: dict[type, Any] = {}


def namespace_of(x: Any) -> Any:
    """The Array API namespace of ``x`` (``TypeError`` if ``x`` is not an array)."""
    xp = _BY_TYPE.get(type(x))
    if xp is None:
        xp = array_namespace(x)
        _BY_TYPE[type(x)] = xp
    return xp
