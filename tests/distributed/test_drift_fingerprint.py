"""The drift check's fingerprint (corrmom_ref.distributed.drift): equal in every process for equal values.

Every rank of an MPI job is its own process, so the fingerprint must not
depend on anything process-specific (string hash randomization, the address
of ``None``, which Python 3.11 hashes). Two fresh interpreters with
different hash seeds compute it for the same optimizer; a changed ``lr``,
``momentum``, ``t``, ``epoch`` or loss scale changes it. No MPI needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    return check.fingerprint().hex()

print(json.dumps({c: fingerprint(c) for c in sys.argv[1:]}))
"""

CHANGES = ["none", "loss scaling", "t", "epoch", "lr", "momentum", "lr as a NumPy scalar"]


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


@pytest.mark.parametrize("change", [c for c in CHANGES if c not in ("none", "lr as a NumPy scalar")])
def test_a_changed_value_changes_the_fingerprint(two_processes, change):
    first, _ = two_processes
    assert first[change] != first["none"]


def test_an_equal_value_of_another_type_does_not(two_processes):
    first, _ = two_processes
    assert first["lr as a NumPy scalar"] == first["none"]
