"""A run's Hypothesis search: its profile, its seed and how long it may shrink failures.

* Profiles: ``conformance-fast`` (12 examples per check, no explain phase)
  or, with ``--corrmom-thorough``, ``conformance-thorough`` (200); with
  ``--corrmom-no-shrink`` either one without the shrink phase. Loaded when the
  check package is imported (:func:`load_profile`), since ``@given`` binds its
  settings then.
* Seed: drawn here when none is given (:func:`fix_seed`), so that the header
  and the report can name it and every run can be repeated.
* Shrinking: at most :data:`SHRINK_SECONDS` per failing check and, in a
  default run, :data:`FAMILY_FAILURE_SECONDS` for the failing checks of one
  family together, after which each further failure of the family shrinks for
  half a second (:func:`bound_shrinking`, :func:`start_check`,
  :func:`charge_failure`). A check whose failure is a declared deviation does
  not shrink at all (:func:`without_shrinking`). The cap itself is set through
  Hypothesis' private engine, in :mod:`corrmom_conformance.shrink_cap`.

Hypothesis is imported only inside these functions: importing this module
(the plugin does) imports nothing of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corrmom_conformance import shrink_cap
from corrmom_conformance.run_state import RunState, current_run

#: Seconds of shrinking per failing check, by default and with ``--thorough``.
SHRINK_SECONDS = {"fast": 4.0, "thorough": 300.0}
#: Seconds that the failing checks of one family may take in all (default runs only):
#: once spent, the family's further failures shrink for at most half a second each.
FAMILY_FAILURE_SECONDS = 8.0


def register_profiles(thorough: bool = False, no_shrink: bool = False) -> str:
    """Register the suite's Hypothesis profiles; return the name of the one to use."""
    from hypothesis import HealthCheck, Phase, settings

    common: dict[str, Any] = {
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow],
        "print_blob": True,
    }
    # no explain phase by default: it reruns a shrunk failure many times to annotate it
    fast_phases = [p for p in Phase if p is not Phase.explain]
    settings.register_profile("conformance-fast", max_examples=12, phases=fast_phases, **common)
    settings.register_profile("conformance-thorough", max_examples=200, **common)
    profile = "conformance-thorough" if thorough else "conformance-fast"
    if no_shrink:
        settings.register_profile(
            profile + "-no-shrink", settings.get_profile(profile), phases=[Phase.explicit, Phase.generate]
        )
        profile += "-no-shrink"
    return profile


def load_profile() -> None:
    """Make the run's Hypothesis profile current.

    Called when :mod:`corrmom_conformance.checks` is imported: ``@given`` binds its
    settings when a check module is imported, so the profile must be loaded
    before that, and only for conformance runs.
    """
    from hypothesis import settings

    run = current_run()  # outside pytest (a reproducer script): the default profile
    if run.profile is None:
        run.profile = register_profiles(*run.profile_options)
    settings.load_profile(run.profile)


def fix_seed(config: pytest.Config, run: RunState) -> None:
    """Draw the Hypothesis seed here when none was given, so the report can name it.

    Runs before Hypothesis' own ``pytest_configure`` (the plugin's is
    ``tryfirst``), which then forces the seed as if ``--hypothesis-seed`` had been given.
    """
    import random

    if config.getoption("hypothesis_seed", default=None) is None and hasattr(
        config.option, "hypothesis_seed"
    ):
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))
        run.seed_drawn = True
    run.seed = config.getoption("hypothesis_seed", default=None)


def bound_shrinking(config: pytest.Config, run: RunState) -> None:
    """Set the run's shrinking budget from its options, and the suite's line for a cut-off shrink."""
    seconds = config.getoption("corrmom_shrink_seconds")
    if seconds is None:
        seconds = SHRINK_SECONDS["thorough" if config.getoption("corrmom_thorough") else "fast"]
    run.shrink_seconds = seconds
    bounded = config.getoption("corrmom_shrink_seconds") is None and not config.getoption("corrmom_thorough")
    run.family_left = {} if bounded else None
    run.shrink_bound = shrink_cap.available()
    if run.shrink_bound:
        shrink_cap.replace_message(run)


def release(run: RunState) -> None:
    """Undo what :func:`bound_shrinking` changed in Hypothesis, at the end of the run."""
    if run.shrink_bound:
        shrink_cap.restore_message(run)


def start_check(item: pytest.Item, run: RunState) -> None:
    """Set this check's shrinking time: the per-check cap, or what its family has left."""
    if not run.shrink_bound or run.shrink_seconds is None:
        return
    seconds = run.shrink_seconds
    if run.family_left is not None:
        left = run.family_left.setdefault(family(item), FAMILY_FAILURE_SECONDS)
        seconds = max(0.5, min(seconds, left))
    shrink_cap.set_seconds(seconds)


def charge_failure(item: pytest.Item, run: RunState, seconds: float) -> None:
    """Take a failed check's time (``seconds``) from its family's budget (default runs only)."""
    if run.family_left is not None:
        run.family_left[family(item)] = run.family_left.get(family(item), FAMILY_FAILURE_SECONDS) - seconds


def family(item: pytest.Item) -> str:
    """The check's family: its module's name (``test_hooks``)."""
    return Path(str(item.fspath)).stem


def without_shrinking(item: pytest.Item, run: RunState) -> None:
    """Run an expected deviation's Hypothesis search without the shrink phase.

    Its failure is expected, so minimising the counterexample only costs time
    (minutes for a state machine); a pass is still found by full generation.
    """
    from hypothesis import Phase, settings

    phases = [p for p in settings().phases if p is not Phase.shrink]  # the loaded profile's
    cls = getattr(item, "cls", None)
    if cls is not None and hasattr(cls, "settings"):  # a RuleBasedStateMachine.TestCase
        cls.settings = settings(cls.settings, phases=phases)
        return
    test = getattr(item, "obj", None)
    done = run.unshrunk  # parametrised items share one test function
    if getattr(test, "is_hypothesis_test", False) and id(test) not in done:
        done.add(id(test))
        settings(settings.default, phases=phases)(test)
