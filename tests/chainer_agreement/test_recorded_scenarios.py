"""corrmom_ref against real Chainer 7.8.1, through the committed fixtures.

``tests/fixtures/chainer`` holds scenarios run in Chainer by
``tools/make_chainer_fixtures.py`` (regenerate with ``nox -s fixtures``).

(a) every step of each scenario replayed here must match Chainer's
    trajectory; (b) Chainer's mid-run snapshot loaded here must continue as
    Chainer's own resumed run did; (c) a snapshot saved here must load in
    real Chainer and continue identically (needs Chainer: importable, or a
    Python with it in ``CORRMOM_CHAINER_PYTHON``).

Comparison: bitwise where the scenario says Chainer's operation order is
ours (``bitwise_on_numpy``) and the backend computes with NumPy's kernels
(NumPy, read-only NumPy, array-api-strict, Dask). Elsewhere (PyTorch, JAX,
whose kernels may fuse or use wider intermediates; or a scenario with
GradientClipping, whose norm Chainer takes in float32 and we in float64):
``|ours - chainer| <= eps * k * (|chainer| + 1)`` per element for parameters
and states after step ``k``, ``eps`` the dtype's machine epsilon (measured
worst case: 0.16 of that, PyTorch float16 with a static loss scale; every
other non-bitwise case below 0.011; most are bitwise anyway). Loss
scales, ``t`` and rule ``t`` are Python numbers on both sides: equal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backends import Backend
from chainer_replay import FIXTURES, build_model, build_optimizer, load_scenario, run_steps, scenario_names

import corrmom_ref as cr

TOOLS = Path(__file__).parents[2] / "tools"
NAMES = scenario_names()


def test_fixtures_are_present() -> None:
    assert len(NAMES) >= 6, f"no Chainer fixtures in {FIXTURES}: run `nox -s fixtures`"
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 200_000, f"fixtures take {total} bytes; keep them small"


def skip_unsupported(bk: Backend, spec: dict) -> None:
    if spec["dtype"] == "float16" and not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")


def compare(
    bk: Backend,
    record: dict,
    ours: dict[str, list[np.ndarray]],
    theirs: dict[str, np.ndarray],
    prefix: str,
    first: int,
) -> None:
    bitwise = record["bitwise_on_numpy"] and bk.numpy_kernels
    eps = float(np.finfo(record["spec"]["dtype"]).eps)
    for key, rows in ours.items():
        expected = theirs[f"{prefix}/{key}"]
        assert len(rows) == len(expected), key
        for i, (got, want) in enumerate(zip(rows, expected, strict=True)):
            step = first + i
            where = f"{record['spec']['optimizer']} {key} after step {step}"
            if bitwise:
                assert got.dtype == want.dtype, where
                np.testing.assert_array_equal(got, want, err_msg=where)
            else:
                tol = eps * step * (np.abs(want.astype(np.float64)) + 1)
                np.testing.assert_array_less(np.abs(got.astype(np.float64) - want), tol, err_msg=where)


def compare_scalars(ours: dict[str, list], theirs: dict[str, list]) -> None:
    assert ours["loss_scale"] == theirs["loss_scale"]
    assert ours["t"] == theirs["t"]
    assert ours["epoch"] == theirs["epoch"]
    assert ours["rule_t"] == theirs["rule_t"]


@pytest.mark.parametrize("name", NAMES)
def test_replay_matches_chainer(bk: Backend, name: str) -> None:
    """(a) the whole run, step by step."""
    record, arrays = load_scenario(name)
    spec = record["spec"]
    skip_unsupported(bk, spec)
    model = build_model(bk, spec, arrays)
    opt = build_optimizer(spec, model)
    ours, scalars = run_steps(bk, spec, arrays, model, opt, 1)
    compare(bk, record, ours, arrays, "run", 1)
    compare_scalars(scalars, record["run"])


@pytest.mark.parametrize("name", NAMES)
def test_chainer_snapshot_resumes_here(bk: Backend, name: str) -> None:
    """(b) load Chainer's model and optimizer snapshots into fresh objects and continue."""
    record, arrays = load_scenario(name)
    spec = record["spec"]
    skip_unsupported(bk, spec)
    model = build_model(bk, spec, arrays)
    opt = build_optimizer(spec, model)
    cr.serializers.load_npz(FIXTURES / f"{name}.model.npz", model)
    cr.serializers.load_npz(FIXTURES / f"{name}.optimizer.npz", opt)
    k = spec["snapshot_after"]
    assert opt.t == record["run"]["t"][k - 1]
    assert {p: q.update_rule.t for p, q in model.namedparams()} == record["run"]["rule_t"][k - 1]
    ours, scalars = run_steps(bk, spec, arrays, model, opt, k + 1)
    compare(bk, record, ours, arrays, "resumed", k + 1)
    compare_scalars(scalars, record["resumed"])


# -- (c) our snapshots in real Chainer ----------------------------------------------


def chainer_runner() -> list[str] | None:
    """How to run tools/chainer_scenarios.py with Chainer, or None."""
    python = os.environ.get("CORRMOM_CHAINER_PYTHON")
    if python:
        return [python, str(TOOLS / "chainer_scenarios.py")]
    if importlib.util.find_spec("chainer") is not None:
        return [sys.executable, str(TOOLS / "chainer_scenarios.py")]
    return None


@pytest.fixture(scope="module")
def chainer_continuations(bk: Backend, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """For every scenario: run here to the snapshot step, save with corrmom_ref,
    and let real Chainer (one process for all scenarios) load and continue."""
    runner = chainer_runner()
    if runner is None:
        pytest.skip("real Chainer not available: set CORRMOM_CHAINER_PYTHON to a Python with chainer 7.8.1")
    tmp = tmp_path_factory.mktemp(f"reverse-{bk.name}")
    jobs, results = [], {}
    for name in NAMES:
        record, arrays = load_scenario(name)
        spec = record["spec"]
        if spec["dtype"] == "float16" and not bk.has_float16:
            continue
        model = build_model(bk, spec, arrays)
        opt = build_optimizer(spec, model)
        run_steps(bk, spec, arrays, model, opt, 1, spec["snapshot_after"])
        cr.serializers.save_npz(tmp / f"{name}.model.npz", model)
        cr.serializers.save_npz(tmp / f"{name}.optimizer.npz", opt)
        jobs += [
            str(FIXTURES / f"{name}.json"),
            str(FIXTURES / f"{name}.npz"),
            str(tmp / f"{name}.model.npz"),
            str(tmp / f"{name}.optimizer.npz"),
            str(tmp / f"{name}.out.npz"),
        ]
        results[name] = {}
    done = subprocess.run([*runner, "resume", *jobs], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in results:
        with np.load(tmp / f"{name}.out.npz") as npz:
            results[name] = {k: npz[k] for k in npz.files}
    results["_dir"] = {"path": tmp}
    return results


@pytest.mark.parametrize("name", NAMES)
def test_our_snapshot_resumes_in_chainer(bk: Backend, name: str, chainer_continuations: dict) -> None:
    """(c) Chainer's continuation from our snapshot equals ours from the same snapshot.

    Chainer ignores our extra ``loss_scaling.*`` keys (its scale restarts at
    1.0); our side ignores them too here, so both continue alike.
    """
    record, arrays = load_scenario(name)
    spec = record["spec"]
    skip_unsupported(bk, spec)
    theirs = chainer_continuations[name]
    tmp = chainer_continuations["_dir"]["path"]
    model = build_model(bk, spec, arrays)
    opt = build_optimizer(spec, model)
    cr.serializers.load_npz(tmp / f"{name}.model.npz", model)
    cr.serializers.load_npz(
        tmp / f"{name}.optimizer.npz", opt, ignore_names=lambda key: key.startswith("loss_scaling.")
    )
    k = spec["snapshot_after"]
    ours, scalars = run_steps(bk, spec, arrays, model, opt, k + 1)
    compare(bk, record, ours, theirs, "resumed", k + 1)
    compare_scalars(scalars, json.loads(theirs["scalars.json"].tobytes().decode()))
