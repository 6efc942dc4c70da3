"""Test configuration: the ``bk`` backend fixture and the hypothesis profile.

``CORRMOM_BACKENDS`` (comma list, see :mod:`backends`) picks the backends;
without it every backend importable here runs. A backend named explicitly
that cannot be loaded is an error, except ``cupy`` without a GPU, which is
skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

import backends
from skip_summary import pytest_terminal_summary  # noqa: F401 (a hook: skips counted per reason)

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("CORRMOM_HYPOTHESIS_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("thorough", max_examples=300, deadline=None)
#: The README's test command (``nox -s tests``): a first answer in minutes; the
#: per-backend legs (``nox -s tests-backend``) run the default budget.
settings.register_profile(
    "quick",
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_EXPLICIT = bool(os.environ.get("CORRMOM_BACKENDS", "").strip())

#: tests/docs builds the documentation site; only ``nox -s docs`` runs it
#: (it sets CORRMOM_DOCS_TESTS), not ``nox -s tests`` nor ``nox -s tests-backend``.
collect_ignore = [] if os.environ.get("CORRMOM_DOCS_TESTS") else ["docs"]
#: tests/engines starts multi-process torch.distributed and JAX jobs; ``nox -s distributed``
#: runs it (it sets CORRMOM_ENGINE_TESTS), not every backend leg of ``nox -s tests``.
if not os.environ.get("CORRMOM_ENGINE_TESTS"):
    collect_ignore.append("engines")


@functools.cache
def _load(name: str) -> backends.Backend | str:
    return backends.load(name)


@pytest.fixture(params=backends.requested(), scope="session")
def bk(request: pytest.FixtureRequest) -> backends.Backend:
    """The array backend under test."""
    loaded = _load(request.param)
    if isinstance(loaded, str):
        if _EXPLICIT and request.param != "cupy":
            pytest.fail(f"requested backend cannot be used: {loaded}", pytrace=False)
        pytest.skip(loaded)
    return loaded
