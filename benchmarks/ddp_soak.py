"""Soak the two-process DDP test: run it many times and count the runs that fail.

    python -m benchmarks.ddp_soak              # 50 runs (about a minute each on 2 busy cores)
    python -m benchmarks.ddp_soak --runs 10
    python -m benchmarks.ddp_soak --quick      # 3 runs (CI)

The test (tests/training/test_distributed.py::test_two_processes_match_one_with_the_same_global
_batch) trains under torchrun with two CPU processes, resumes under torchrun, and compares
both with one process. It once failed in CI: a rank aborted at exit with "terminate called
without an active exception". The cause was torch._dynamo, which DistributedDataParallel
imports: imported after the process group existed, it kept references to the group, so
destroy_process_group could not free it and gloo's threads outlived the run, racing the C++
runtime's teardown at exit (charlm/training/distributed.py now imports it first;
test_no_process_group_thread_outlives_a_distributed_run checks the threads are gone). Each run
here is a fresh pytest process; a failure's last lines are kept in the JSON.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    BenchmarkCommand,
    print_table,
    results_option,
    write_results,
)

TEST = "tests/training/test_distributed.py::test_two_processes_match_one_with_the_same_global_batch"


def run_once(timeout: float) -> tuple[bool, float, str]:
    """One pytest run of the test: (passed, seconds, the last lines of its output)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", TEST],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        passed, output = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        passed, output = False, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}"
    return passed, time.perf_counter() - started, "\n".join(output.splitlines()[-40:])


@click.command(cls=BenchmarkCommand)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--quick", is_flag=True, help="3 runs, for CI.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Per run, s.")
@results_option(RESULTS_DIR / "ddp_soak.json")
def main(runs: int, quick: bool, timeout: float, out: Path) -> None:
    """Run the two-process DDP test RUNS times and report the failures."""
    runs = 3 if quick else runs
    failures, seconds = [], []
    for index in range(1, runs + 1):
        passed, took, tail = run_once(timeout)
        seconds.append(took)
        if not passed:
            failures.append({"run": index, "output": tail})
        print(f"run {index}/{runs}: {'ok' if passed else 'FAILED'} ({took:.0f} s)", flush=True)
    print_table(
        ["test", "runs", "failures", "mean s"],
        [[TEST.rsplit("::", 1)[1], runs, len(failures), sum(seconds) / runs]],
    )
    path = write_results(out, {"test": TEST, "runs": runs, "failures": failures})
    print(f"wrote {path}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
