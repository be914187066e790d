"""The sampling benchmark runs end to end in its quick mode (no timing is asserted)."""

import json

from tests.benchmarks import run_benchmark


def test_quick_benchmark_prints_a_table_and_writes_every_section(tmp_path):
    out = tmp_path / "sampling.json"
    args = ["--quick", "--num-samples", "3", "--out", str(out)]
    result = run_benchmark("benchmarks.sampling", *args)
    assert result.returncode == 0, result.stderr
    assert "1. per-token cost" in result.stdout and "inverse-CDF" in result.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["machine"]["command"] == "python -m benchmarks.sampling " + " ".join(args)
    for section in ("per_token", "batches", "naive", "priming", "draws", "ngram"):
        assert results[section], section
    assert all(row["us_per_token"] > 0 for row in results["per_token"])
    assert results["batches"]["num_samples"] == 3 and "num_samples=3:" in result.stdout
    # A 5-gram mixed in, at batch 1 and the batch asked for.
    assert [row["num_samples"] for row in results["ngram"]["rows"]] == [1, 3]
    assert "6. a 5-gram mixed in" in result.stdout
