"""The cap on Hypothesis' shrinking time: the one module that touches Hypothesis' private names.

Hypothesis has no setting for how long it shrinks one failure. Its engine,
the private module ``hypothesis.internal.conjecture.engine``, stops shrinking
after ``MAX_SHRINKING_SECONDS`` (five minutes) and then prints a warning
through that module's ``report`` function, written for its own cap ("more
than five minutes ... PLEASE REPORT THIS"). An implementation under test that
is wrong fails many checks, and five minutes of shrinking each would make a
run last hours, so the suite:

* sets ``engine.MAX_SHRINKING_SECONDS`` before each check (:func:`set_seconds`);
* replaces ``engine.report`` for the run (:func:`replace_message`) by a
  function that prints the suite's own line instead of that warning and passes
  every other message through, and puts the original back when the run ends
  (:func:`restore_message`).

Both are private names that a Hypothesis release may drop or change:
:func:`available` says whether the engine has the constant; without it
Hypothesis shrinks as it always does and the suite sets nothing. Hypothesis is
imported only when one of these is called (a run that does not ask for the
suite never imports it).
"""

from __future__ import annotations

from typing import Any

#: How Hypothesis' engine starts the message it prints when shrinking runs past
#: ``MAX_SHRINKING_SECONDS`` (written for its own five-minute cap).
HYPOTHESIS_SLOW_SHRINK = "WARNING: Hypothesis has spent more than five minutes working to shrink"


def _engine() -> Any:
    """Hypothesis' private engine module (typed ``Any``: its names are not public API)."""
    from hypothesis.internal.conjecture import engine

    return engine


def available() -> bool:
    """Whether this Hypothesis' engine has the private constant :func:`set_seconds` sets."""
    return hasattr(_engine(), "MAX_SHRINKING_SECONDS")


def set_seconds(seconds: float) -> None:
    """Let Hypothesis shrink the next failure for at most ``seconds`` (call only where :func:`available`)."""
    _engine().MAX_SHRINKING_SECONDS = seconds


class _CapMessage:
    """Hypothesis' ``report`` in its engine, with its slow-shrinking warning replaced by the suite's.

    The suite cuts shrinking after seconds, on purpose; Hypothesis' message
    (five minutes, "PLEASE REPORT THIS") would be wrong. Everything else passes through.
    """

    def __init__(self, original: Any, owner: Any) -> None:
        self.original, self.owner = original, owner

    def __call__(self, text: Any) -> None:
        if isinstance(text, str) and text.startswith(HYPOTHESIS_SLOW_SHRINK):
            text = (
                f"corrmom conformance: stopped shrinking after the suite's cap of {self.owner.shrink_seconds:g} s "
                "(--corrmom-shrink-seconds); the counterexample is smaller than the first one found, "
                "not necessarily minimal"
            )
        self.original(text)


def replace_message(owner: Any) -> None:
    """Print the suite's line instead of Hypothesis' slow-shrinking warning, until :func:`restore_message`.

    ``owner`` (the run) gives the cap it names, as ``owner.shrink_seconds``.
    Nothing is replaced where the engine has no ``report`` function.
    """
    engine = _engine()
    if callable(getattr(engine, "report", None)):
        engine.report = _CapMessage(engine.report, owner)


def restore_message(owner: Any) -> None:
    """Give Hypothesis its own ``report`` back, if ``owner``'s replacement is the one in place."""
    engine = _engine()
    replacement = getattr(engine, "report", None)
    if isinstance(replacement, _CapMessage) and replacement.owner is owner:
        engine.report = replacement.original
