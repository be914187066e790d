"""The scratch-vs-torch benchmark's results file, from a --quick run (its curves and speed are
tested in tests/models/test_scratch_vs_torch.py)."""

import json

from tests.benchmarks import run_benchmark


def test_quick_results_record_the_machine_and_the_command(tiny_book, tmp_path):
    out = tmp_path / "scratch_vs_torch.json"
    args = ["--quick", "--book", str(tiny_book), "--cell", "rnn", "--out", str(out)]
    result = run_benchmark("benchmarks.scratch_vs_torch", *args)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["machine"]["cpu"] and results["quick"]
    command = "python -m benchmarks.scratch_vs_torch " + " ".join(args)
    assert results["machine"]["command"] == command
