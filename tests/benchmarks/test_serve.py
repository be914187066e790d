"""The serving benchmark runs end to end in its quick mode (no timing is asserted)."""

import json

import pytest

from tests.benchmarks import run_benchmark


def test_quick_benchmark_prints_the_tables_and_writes_every_section(tmp_path):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed (charlm[serve])")
    out = tmp_path / "serve.json"
    result = run_benchmark("benchmarks.serve", "--quick", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1. time to first token" in result.stdout and "3. clients at once" in result.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["one_client"]["served_tokens_per_s"] > 0
    assert results["one_client"]["served_first_token_ms"] > 0
    assert results["one_client"]["every_piece_ratio"] > 0
    assert [row["clients"] for row in results["throughput"]] == [1, 4]
    for row in results["throughput"]:
        assert row["batched"]["tokens_per_s"] > 0 and row["in_turn"]["tokens_per_s"] > 0
