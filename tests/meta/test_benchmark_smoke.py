"""The benchmark runs end to end on tiny workloads and reports what it claims (structure, not speed)."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the benchmark smoke test runs once, in the NumPy leg",
)


def test_quick_benchmark_writes_ratios(tmp_path, capsys, monkeypatch):
    from benchmarks.__main__ import main
    from benchmarks.measure import ONE_XLA_THREAD

    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the run sets it; undone after the test

    assert main(["--quick", "--only", "numpy in place (plain)", "ref on numpy", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    low, high = result["bandwidth_spread"]
    assert 0 < low <= result["bandwidth_bytes_per_s"] <= high
    assert result["torch_threads"] == 1
    assert result["xla_flags"] == ONE_XLA_THREAD
    for workload in result["workloads"].values():
        assert set(workload["rows"]) == {"numpy in place (plain)", "ref on numpy"}
        floors = workload["round_floors_s"]
        assert len(floors) == 2  # one bandwidth probe per round
        for row in workload["rows"].values():
            fastest, slowest = row["spread_s"]
            assert 0 < fastest <= row["median_s"] <= slowest
            # each round's ratio is a median step time over that round's floor
            lo, hi = row["ratio_spread"]
            assert lo <= row["ratio_to_floor"] <= hi
            assert fastest / max(floors) <= lo and hi <= slowest / min(floors)
            assert row["peak_extra_MiB"] is not None
    out = capsys.readouterr().out
    assert "x floor" in out
    assert "issue 22's targets" in out  # pairs whose rows did not run say so
    assert "corrmom_ref.torch / torch SGD fused <= 1.05: not run | not run: not run" in out


def test_the_benchmark_sets_xlas_threads_before_anything_imports_jax():
    """``XLA_FLAGS`` is read when JAX is first imported: importing the benchmark's modules
    imports no JAX, so the flags the run sets reach every XLA row."""
    import subprocess
    import sys

    code = (
        "import sys, benchmarks.__main__, benchmarks.optax_side_by_side, benchmarks.runners\n"
        "print(sorted(m for m in ('jax', 'jaxlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_rounds_time_the_rows_in_orders_where_no_row_always_follows_the_same_one():
    """Each round's order is a permutation of the rows, the same in every run; over the seven
    rounds of a run a row follows other rows, not always one (a rotation would keep each row's
    predecessor fixed, and a predecessor that leaves work behind would slow it every round)."""
    from benchmarks.measure import round_order

    names = [f"row {i}" for i in range(24)]
    orders = [round_order(names, r) for r in range(7)]
    assert all(sorted(order) == sorted(names) for order in orders)
    assert orders == [round_order(names, r) for r in range(7)]
    for name in names:
        before = {order[order.index(name) - 1] for order in orders if order.index(name) > 0}
        assert len(before) >= 3, (name, before)


def test_targets_are_ratios_within_rounds():
    """A target's ratio is the median over rounds of ours / theirs within the round, not the
    ratio of the rows' medians over the run; a workload where a row did not run says so, and
    one workload over the limit fails the target."""
    from benchmarks.targets import TARGETS, targets_table

    target = TARGETS[0]

    def workload(ours, theirs):
        return {"rows": {target.ours: {"round_medians_s": ours}, target.theirs: {"round_medians_s": theirs}}}

    # Rounds drift by 10x; within each round ours is 1.00, 1.02 or 2.0 times theirs. The
    # rows' medians over the run (20 and 10) would give 2.0.
    drifting = workload([1.0, 10.2, 20.0, 100.0, 1000.0], [1.0, 10.0, 10.0, 100.0, 1000.0])
    result = {"workloads": {"a": drifting, "b": {"rows": {}}}}
    line = next(line for line in targets_table(result).splitlines() if line.startswith(f"  {target.ours} /"))
    assert line.endswith(": 1.00 (1.00-2.00) | not run: met")
    result["workloads"]["b"] = workload([1.1, 1.1, 1.1], [1.0, 1.0, 1.0])
    assert targets_table(result).splitlines()[1].endswith("| 1.10 (1.10-1.10): NOT met")


def test_jitted_optax_rows_report_xlas_peak_extra_memory(tmp_path):
    """The optax rows' peak extra memory is XLA's account of a step's allocations: a donated
    step (loss scaling included) writes into its inputs, an undonated one allocates the new
    parameter and state. (On leaves of 1 Ki elements XLA materialises the finiteness check's
    ``g - g`` before summing it, one gradient's bytes in all: checked on the 64 Ki leaf.)"""
    pytest.importorskip("optax")
    from benchmarks.__main__ import main

    rows = ["ref-optax, jit", "ref-optax, jit, donated", "ref-optax + loss_scaling, jit, donated"]
    assert main(["--quick", "--only", *rows, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    for workload in result["workloads"].values():
        parameters_mib = workload["elements"] * 4 / 2**20
        peak = {name: row["peak_extra_MiB"] for name, row in workload["rows"].items()}
        assert peak["ref-optax, jit"] >= 2 * parameters_mib  # new parameters and velocities
        assert peak["ref-optax, jit, donated"] < parameters_mib / 16
        if workload["params"] == 1:
            assert peak["ref-optax + loss_scaling, jit, donated"] < parameters_mib / 16


def test_compare_two_versions_interleaved(tmp_path, capsys):
    """``benchmarks.compare`` times one implementation under two library folders and prints the ratio."""
    from benchmarks.compare import ROOT, main

    assert main([str(ROOT), str(ROOT), "--quick", "--rounds", "2", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert f"old: {ROOT}" in out and f"new: {ROOT}" in out
    assert "ref on numpy, small: new / old = " in out


def test_compare_names_a_bad_revision():
    from benchmarks.compare import main

    with pytest.raises(SystemExit, match="no-such-revision"):
        main(["no-such-revision", "--quick", "--rounds", "2"])


def test_optax_side_by_side_times_the_shapes_it_is_given(capsys):
    """``--shape`` adds one workload per shape (one parameter each), whose rows and ratios are
    printed like the named workloads'; a malformed shape is refused, naming it."""
    pytest.importorskip("optax")
    from benchmarks.optax_side_by_side import main

    assert main(["--workload", "--shape", "4x3x3", "36", "--rounds", "2", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    for name, shape in (("4x3x3", "(4, 3, 3)"), ("36", "(36,)")):
        assert f"{name}: 1 parameters, 36 elements {shape}" in out
    assert out.count("ref-optax + loss_scaling, jit, donated".ljust(46) + " / ref-optax, jit, donated") == 2
    with pytest.raises(SystemExit):
        main(["--shape", "4x0"])
    assert "got '4x0'" in capsys.readouterr().err


def test_torch_memory_tracer_sees_a_steps_temporaries_and_frees():
    """PyTorch's CPU allocator is invisible to tracemalloc; the profiler-based tracer sees it.

    ``two_alive`` holds two 1 Mi float32 temporaries at once, then a third after
    freeing both: 8 MiB at the peak. ``replaces`` makes a new 4 MiB tensor while
    the one it replaces (held before the step) is still alive: 4 MiB beyond what
    was held. A step that writes in place allocates nothing."""
    from benchmarks.measure import torch_peak_extra_bytes

    torch = pytest.importorskip("torch")
    a = torch.ones(1 << 20)
    kept = [a * 2]

    def two_alive() -> None:
        first = a * 2.0
        second = a * 3.0
        del first, second
        third = a * 4.0
        del third

    def replaces() -> None:
        kept[0] = a * 2.0

    def in_place() -> None:
        a.mul_(1.0)

    scalars = 64  # bytes: the Python scalars an operator wraps as 0-d tensors
    assert 8 * 2**20 <= torch_peak_extra_bytes(two_alive) <= 8 * 2**20 + scalars
    assert 4 * 2**20 <= torch_peak_extra_bytes(replaces) <= 4 * 2**20 + scalars
    assert torch_peak_extra_bytes(in_place) <= scalars


def test_every_torch_row_reports_its_peak_extra_memory(tmp_path):
    pytest.importorskip("torch")
    from benchmarks.__main__ import TORCH_PROFILED, main
    from benchmarks.runners import RUNNERS

    assert {name for name in RUNNERS if "torch" in name} == TORCH_PROFILED
    rows = [
        "torch SGD fused",
        "corrmom_ref.torch",
        "corrmom_ref.torch + LossScaler",
        "corrmom_ref.torch, generic",
    ]
    assert main(["--quick", "--only", *rows, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    scalars = 64 / 2**20  # MiB: a few 0-d tensors
    for workload in result["workloads"].values():
        peak = {name: row["peak_extra_MiB"] for name, row in workload["rows"].items()}
        # the fused kernels write in place: a step allocates at most a few scalars
        assert peak["torch SGD fused"] <= scalars and peak["corrmom_ref.torch"] <= scalars, peak
        assert peak["corrmom_ref.torch + LossScaler"] <= scalars, peak
        # fused=False on the CPU: one lr * v temporary of the largest tensor, at a time
        largest_mib = 4 * max(workload["elements"] // workload["params"], 1) / 2**20
        assert largest_mib <= peak["corrmom_ref.torch, generic"] <= largest_mib + scalars, peak
