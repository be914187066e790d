"""The scratch-vs-torch benchmark runs end to end in --quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_writes_matching_curves(tiny_book, tmp_path):
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.scratch_vs_torch",
        "--quick",
        "--book",
        str(tiny_book),
        "--out",
        str(out),
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [row["cell"] for row in report["results"]] == ["rnn", "gru", "lstm"]
    for row in report["results"]:
        assert len(row["runs"]["torch"]["losses"]) == report["steps"]
        assert row["max_loss_difference"] < 1e-4
        assert row["slowdown"] > 0
        assert row["cell"] in completed.stdout  # the table names every cell
