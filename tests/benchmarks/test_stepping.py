"""The stepping benchmark runs end to end in its quick mode (no timing is asserted)."""

import json

from tests.benchmarks import run_benchmark


def test_quick_benchmark_times_both_steps_alone_and_in_the_sampler(tmp_path):
    out = tmp_path / "stepping.json"
    result = run_benchmark("benchmarks.stepping", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "cell fn / laid out" in result.stdout and "charlm / cell fn" in result.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    assert all(row["laid_out"] > 0 and row["cell_fn"] > 0 for row in results["step"])
    assert [row["num_samples"] for row in results["sampler"]] == [1, 4]
    assert all(row["charlm"] > 0 and row["cell_fn"] > 0 for row in results["sampler"])
