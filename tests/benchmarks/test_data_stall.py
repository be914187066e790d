"""The data-stall benchmark runs end to end in its quick mode (no timing is asserted)."""

import json

from tests.benchmarks import run_benchmark


def test_quick_data_stall_benchmark_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "data_stall.json"
    result = run_benchmark("benchmarks.data_stall", "--quick", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "stall" in result.stdout and "sequential" in result.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    rows = results["rows"]
    command = f"python -m benchmarks.data_stall --quick --threads 1 --out {out}"
    assert results["machine"]["command"] == command and results["quick"]
    assert {row["iterator"] for row in rows} == {"sequential", "random"}
    assert all(0 <= row["stall_fraction"] < 1 and row["ms_per_step"] > 0 for row in rows)
