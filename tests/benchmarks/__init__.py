"""Tests of the benchmark scripts, each run end to end as a user runs it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS...` from the project root, its output captured as text."""
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
