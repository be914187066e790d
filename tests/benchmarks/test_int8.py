"""The int8 benchmark runs end to end in its quick mode (no figure is asserted)."""

import json

import pytest

from tests.benchmarks import run_benchmark
from tests.conftest import shared_corpus


@pytest.mark.corpus
def test_quick_benchmark_trains_times_and_scores_every_cell(tmp_path):
    shared_corpus("tinyshakespeare/input.txt")
    out = tmp_path / "int8.json"
    result = run_benchmark("benchmarks.int8", "--quick", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert [r["model"] for r in rows] == ["lstm", "lstm (scratch)", "gru", "rnn"]
    for row in rows:
        assert all(v > 0 for v in row["tokens_per_s"].values())
        if row["model"] == "lstm (scratch)":
            assert "scratch" in row["int8_refused"] and "int8" not in row["tokens_per_s"]
        else:
            assert (
                set(row["bits_per_char"])
                == set(row["stepped_bits_per_char"])
                == {"float32", "int8"}
            )
            assert {"int8 torch", "int8 layers"} <= set(row["tokens_per_s"])
            assert all(us > 0 for us in row["step_us"].values())
    assert "int8/float32" in result.stdout


def test_a_checkpoint_that_is_not_one_is_a_one_line_error(tmp_path):
    result = run_benchmark("benchmarks.int8", "--checkpoint", f"lstm={tmp_path}", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path} is not a charlm checkpoint (no config.json)" in result.stderr
