"""Marking a check *not applicable* to an implementation, with the reason."""

from __future__ import annotations

import pytest

__all__ = ["NOT_APPLICABLE", "require"]

#: Prefix of every skip reason the report shows as *not applicable*.
NOT_APPLICABLE = "not applicable"


def require(adapter: object, *capabilities: str) -> None:
    """Skip the current check unless ``adapter`` declares every capability."""
    missing = sorted(set(capabilities) - set(getattr(adapter, "capabilities", ())))
    if missing:
        pytest.skip(f"{NOT_APPLICABLE}: {getattr(adapter, 'name', adapter)} does not declare "
                    f"{', '.join(missing)}")
