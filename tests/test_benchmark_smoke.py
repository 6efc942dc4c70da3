"""The benchmark runs end to end on tiny workloads and reports what it claims (structure, not speed)."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.skipif(
    "numpy" not in os.environ.get("CORRMOM_BACKENDS", "numpy").split(","),
    reason="the benchmark smoke test runs once, in the NumPy leg",
)


def test_quick_benchmark_writes_ratios(tmp_path, capsys):
    from benchmarks.__main__ import main

    assert main(["--quick", "--only", "numpy in place (plain)", "ref on numpy", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["bandwidth_bytes_per_s"] > 0
    for workload in result["workloads"].values():
        assert set(workload["rows"]) == {"numpy in place (plain)", "ref on numpy"}
        for row in workload["rows"].values():
            assert row["median_s"] > 0
            assert row["ratio_to_floor"] == pytest.approx(row["median_s"] / workload["floor_s"])
            assert row["peak_extra_MiB"] is not None
    assert "x floor" in capsys.readouterr().out
