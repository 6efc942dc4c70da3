"""The drift check's fingerprint (corrmom_ref.distributed.drift): equal in every process for equal values.

Every rank of an MPI job is its own process, so the fingerprint must not
depend on anything process-specific (string hash randomization, the address
of ``None``, which Python 3.11 hashes). Two fresh interpreters with
different hash seeds compute it for the same optimizer; a changed ``lr``,
``momentum`` (the optimizer's, or one parameter's own), ``t``, ``epoch``
or loss scale changes it. No MPI needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref.distributed.drift import DriftCheck

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = r"""
import json, sys
import numpy as np
import corrmom_ref as cr
from corrmom_ref.distributed.drift import DriftCheck

def fingerprint(change):
    link = cr.Link(W=cr.Parameter(np.zeros((2, 3))), b=cr.Parameter(np.zeros(2)))
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(link)
    check = DriftCheck(opt)
    if change == "loss scaling":
        opt.loss_scaling()
    elif change == "t":
        opt.t = 1
    elif change == "epoch":
        opt.new_epoch()
    elif change in ("lr", "momentum"):
        setattr(opt, change, 0.5)
    elif change == "lr as a NumPy scalar":
        opt.lr = np.float64(0.1)
    elif change == "lr of one parameter":
        link.W.update_rule.hyperparam.lr = 0.5
    elif change == "lr of one parameter, equal to the optimizer's":
        link.W.update_rule.hyperparam.lr = 0.1
    return check.fingerprint().hex()

print(json.dumps({c: fingerprint(c) for c in sys.argv[1:]}))
"""

CHANGES = [
    "none",
    "loss scaling",
    "t",
    "epoch",
    "lr",
    "momentum",
    "lr of one parameter",
    "lr as a NumPy scalar",
    "lr of one parameter, equal to the optimizer's",
]
SAME = ("none", "lr as a NumPy scalar", "lr of one parameter, equal to the optimizer's")


def fingerprints(seed: str) -> dict[str, str]:
    env = dict(
        os.environ, PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *CHANGES], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def two_processes() -> tuple[dict[str, str], dict[str, str]]:
    return fingerprints("1"), fingerprints("2")


def test_two_processes_agree_on_every_fingerprint(two_processes):
    first, second = two_processes
    assert first == second


@pytest.mark.parametrize("change", [c for c in CHANGES if c not in SAME])
def test_a_changed_value_changes_the_fingerprint(two_processes, change):
    first, _ = two_processes
    assert first[change] != first["none"]


@pytest.mark.parametrize("change", SAME[1:])
def test_an_equal_value_of_another_type_or_place_does_not(two_processes, change):
    first, _ = two_processes
    assert first[change] == first["none"]


def step(opt):
    """What one ``update()`` does to the counters the fingerprint reads."""
    opt.t += 1


def test_a_change_between_steps_is_seen_and_nothing_else_recomputes():
    """A warm check (the bytes kept while only ``t`` moves) still sees a parameter's own change, and its undoing."""
    link = cr.Link(W=cr.Parameter(np.zeros((2, 3))), b=cr.Parameter(np.zeros(2)))
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(link)
    check = DriftCheck(opt)
    first = check.fingerprint()
    step(opt)
    assert check.fingerprint() is first  # nothing but t moved: the same object, nothing recomputed
    step(opt)
    link.b.update_rule.hyperparam.momentum = 0.5
    changed = check.fingerprint()
    assert changed != first
    step(opt)
    del link.b.update_rule.hyperparam.momentum
    assert check.fingerprint() == first


def test_an_override_held_in_a_0d_array_changed_in_place_is_seen():
    """No write announces an in-place change: such a value is read at every step."""
    link = cr.Link(W=cr.Parameter(np.zeros((2, 3))))
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(link)
    link.W.update_rule.hyperparam.lr = np.array(0.2)
    check = DriftCheck(opt)
    first = check.fingerprint()
    step(opt)
    link.W.update_rule.hyperparam.lr[...] = 0.3
    assert check.fingerprint() != first
