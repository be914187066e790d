"""The training-overhead benchmark: its FLOP count, and a quick run end to end (no timings
are asserted)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from benchmarks.train_overhead import CONFIGS, main


def test_the_flop_count_is_the_standard_lstm_count():
    a = CONFIGS["a"]  # V=65, E=64, 2 x 256
    forward = 8 * 256 * (64 + 256) + 8 * 256 * (256 + 256) + 2 * 256 * 65
    assert a.forward_flops_per_token() == forward
    assert a.train_flops_per_token() == 3 * forward


def test_quick_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "overhead.json"
    result = CliRunner().invoke(main, ["--quick", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "charlm tok/s" in result.output and "ratio" in result.output
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["threads"] == 1 and len(row["charlm_runs"]) == len(row["bare_runs"]) == 2
    assert row["charlm_tokens_per_s"] > 0 and row["bare_tokens_per_s"] > 0
    assert row["ratio"] == row["charlm_tokens_per_s"] / row["bare_tokens_per_s"]
    assert 0 < row["charlm_efficiency"] and data["matmul_gflops"]["1"] > 0
    assert data["machine"]["cpu"] and data["machine"]["torch"]
