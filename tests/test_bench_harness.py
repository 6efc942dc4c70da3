"""Smoke test of the benchmark harness (benchmarks/): structure of its outputs, never timings."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed

import benchmarks.__main__ as bench_main
from benchmarks.stats import summarize
from benchmarks.workloads import default_workloads, resnet50_shapes


def test_resnet50_has_its_published_parameter_count():
    shapes = resnet50_shapes()
    assert len(shapes) == 161
    assert sum(math.prod(s) for s in shapes) == 25_557_032


def test_default_workloads_match_the_issue():
    large, small, _ = default_workloads()
    assert large.shapes == ((16 * 2**20,),)
    assert small.shapes == ((1024,),) * 1000


def test_summary_quartiles():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.q1, s.median, s.q3, s.n) == (2.0, 3.0, 4.0, 5)


def test_quick_run_writes_table_json_and_chart(tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["--quick", "--rounds", "2", "--only", "small", "--impls", "ref numpy", "torch SGD fused"]
    assert bench_main.main([*argv, "--json", str(out_json), "--chart", str(out_png)]) == 0
    data = json.loads(out_json.read_text())
    (workload,) = data["workloads"]
    assert workload["name"] == "small" and workload["n_params"] == 20
    assert workload["bandwidth_GBps"] > 0 and workload["floor_s"] > 0
    names = {r["name"] for r in workload["results"]}
    assert "ref numpy generic" in names
    for r in workload["results"]:
        assert r["samples"] == 2
        assert r["q1_s"] <= r["median_s"] <= r["q3_s"]
        assert r["ratio_to_floor"] == pytest.approx(r["median_s"] / workload["floor_s"])
        assert r["us_per_param"] == pytest.approx(r["median_s"] * 1e6 / 20)
    numpy_row = next(r for r in workload["results"] if r["name"] == "ref numpy generic")
    assert isinstance(numpy_row["peak_extra_bytes"], int)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ref numpy generic" in capsys.readouterr().out
