"""Step-by-step comparison of an implementation with the oracle, reporting the first divergence."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from conformance.oracle import OracleState, Step
from conformance.tolerances import trajectory_atol

__all__ = ["drive", "magnitude"]


def magnitude(trajectory: Sequence[OracleState], steps: Sequence[Step]) -> float:
    """The largest |w|, |u| or |lr * u| along an oracle trajectory (for tolerances)."""
    biggest = 0.0
    for state, step in zip(trajectory, steps, strict=True):
        for n in state.w:
            u = np.abs(state.u[n].astype(np.float64))
            biggest = max(biggest, float(np.max(np.abs(state.w[n].astype(np.float64)), initial=0.0)),
                          float(np.max(u, initial=0.0)) * max(1.0, step.lr[n]))
    return biggest


def drive(run: object, steps: Sequence[Step], trajectory: Sequence[OracleState], dtype: np.dtype,
          *, check_state: bool = False, before_step: Callable[[int, Step], None] | None = None,
          atol: Callable[[np.ndarray, int], np.ndarray | float] | None = None) -> None:
    """Apply ``steps`` to ``run`` and assert after every step that it follows ``trajectory``.

    With ``check_state`` the exposed state must equal ``-u`` (Chainer's sign).
    The assertion names the first step and parameter where they diverge.
    """
    scale = magnitude(trajectory, steps)
    for k, (step, expected) in enumerate(zip(steps, trajectory, strict=True)):
        if before_step is not None:
            before_step(k, step)
        run.step(step.grads)  # type: ignore[attr-defined]
        got = run.params()  # type: ignore[attr-defined]
        for n, want in expected.w.items():
            want64 = want.astype(np.float64)
            tol = atol(want64, k + 1) if atol is not None else trajectory_atol(dtype, k + 1, scale)
            _assert_close(f"w[{n}]", got[n], want64, tol, k, step)
            if check_state:
                v = run.velocity(n)  # type: ignore[attr-defined]
                assert v is not None, f"step {k + 1}: state of {n} missing after an update"
                _assert_close(f"v[{n}] (Chainer's sign: v = -u)", v, -expected.u[n].astype(np.float64),
                              tol, k, step)


def _assert_close(what: str, got: np.ndarray, want: np.ndarray, tol: object, k: int, step: Step) -> None:
    got64 = np.asarray(got, dtype=np.float64)
    if got64.shape != want.shape or not np.all(np.abs(got64 - want) <= tol):
        raise AssertionError(
            f"first divergence at step {k + 1}: {what} = {got64.tolist()}, oracle {want.tolist()} "
            f"(tolerance {np.max(tol) if np.ndim(tol) else tol:.3g}); step lr={dict(step.lr)}, "
            f"momentum={dict(step.momentum)}")
