"""The loading benchmark runs end to end in its quick mode (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks import run_benchmark
from tests.conftest import TINY_TEXT


@pytest.mark.slow
def test_loading_benchmark_quick_mode(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text(TINY_TEXT * 40, encoding="utf-8")
    results = tmp_path / "loading.json"
    args = ["--quick", "--source", str(source), "--threads", "1", "--out", str(results)]
    done = run_benchmark("benchmarks.loading", *args)
    assert done.returncode == 0, done.stderr
    report = json.loads(results.read_text(encoding="utf-8"))
    # --out and --threads as every benchmark takes them, the command and machine as they record
    assert report["threads"] == 1 and report["machine"]["cpu"]
    assert report["machine"]["command"] == "python -m benchmarks.loading " + " ".join(args)
    first, cached = report["runs"]
    assert (first["cache_hit"], cached["cache_hit"]) == (False, True)
    assert first["train_tokens"] == cached["train_tokens"] > 0
    assert all(run["peak_rss_mb"] > 0 for run in report["runs"])
    assert "temporary directory" in done.stderr
