"""Loading a 100 MB corpus: first run vs cached run, and peak memory of a short char training.

    python -m benchmarks.loading            # WikiText-2 train x 10 (108 MB), 5 steps per run
    python -m benchmarks.loading --quick    # a small input, 2 steps per run (CI)

The shared corpora top out at 11 MB, so the input is built at run time in a temporary
directory: the source file (WikiText-2's training text by default) repeated `--copies` times.
Each run is `charlm train` in a child process with its own token cache directory: the first
run reads, detects, tokenizes and caches; the second finds the cache. The table shows the data
loading time the checkpoint records (`data.prepare_seconds`), the whole run's wall time, and
the child's peak resident memory (ru_maxrss from os.wait4, i.e. that one child's
getrusage(RUSAGE_CHILDREN) figure, so the second run is not masked by the first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    results_option,
    threads_option,
    write_results,
)

DEFAULT_SOURCE = CORPORA / "wikitext-2" / "train.txt"
RESULTS = RESULTS_DIR / "loading.json"
TARGET_RSS_MB = 2048


def build_input(source: Path, copies: int, directory: Path) -> Path:
    """`source` repeated `copies` times, written block by block (never all in memory)."""
    target = directory / f"{source.stem}-x{copies}.txt"
    with open(target, "wb") as out:
        for _ in range(copies):
            with open(source, "rb") as src:
                while block := src.read(1 << 24):
                    out.write(block)
    return target


def train_once(
    corpus: Path, work: Path, steps: int, label: str, threads: int | None
) -> dict[str, Any]:
    """One `charlm train` child process; its wall time, peak RSS and recorded load time."""
    out = work / f"checkpoint-{label}"
    command = [
        sys.executable, "-m", "charlm", "train", str(corpus),
        "--max-steps", str(steps), "--model", "lstm", "--layers", "1", "--hidden", "128",
        "--embed", "32", "--batch-size", "32", "--seq-len", "100",
        "--val-fraction", "0.0005", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    command += ["--threads", str(threads)] if threads else []
    env = {**os.environ, "CHARLM_CACHE": str(work / "cache")}
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.stdout.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise click.ClickException(f"charlm train failed ({label}):\n{output[-2000:]}")
    data = json.loads((out / "config.json").read_text(encoding="utf-8"))["data"]
    return {
        "run": label,
        "cache_hit": data["cache"]["hit"],
        "load_s": data["prepare_seconds"],
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports kilobytes
        "train_tokens": data["train_tokens"],
        "token_dtype": data["token_dtype"],
    }


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="Small input and 2 steps: checks the benchmark runs.")
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"Text to repeat.  [default: {DEFAULT_SOURCE}]",
)
@click.option(
    "--copies",
    type=click.IntRange(min=1),
    default=None,
    help="How many times to repeat it.  [default: 10, or 1 with --quick]",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Training steps per run.  [default: 5, or 2 with --quick]",
)
@threads_option()
@results_option(RESULTS)
def main(
    quick: bool,
    source: Path | None,
    copies: int | None,
    steps: int | None,
    threads: int | None,
    out: Path,
) -> None:
    """Time first-run and cached-run corpus loading and measure peak RSS."""
    console = Console(stderr=True, highlight=False)
    source = source or DEFAULT_SOURCE
    if not source.is_file():
        raise click.ClickException(f"{source} is absent; give --source (a text file to repeat)")
    copies = copies or (1 if quick else 10)
    steps = steps or (2 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="charlm-loading-") as tmp:
        work = Path(tmp)
        corpus = build_input(source, copies, work)
        size_mb = corpus.stat().st_size / 1e6
        console.print(
            f"input: {source.name} x {copies} = {size_mb:.1f} MB, built in the temporary "
            f"directory {work} (deleted afterwards)"
        )
        rows = [train_once(corpus, work, steps, label, threads) for label in ("first", "cached")]
    table = Table(title=f"Loading {size_mb:.1f} MB and training a char LSTM for {steps} steps")
    for column in ("run", "cache hit", "load s", "wall s", "peak RSS MB", "train tokens"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(
            row["run"],
            "yes" if row["cache_hit"] else "no",
            f"{row['load_s']:.2f}",
            f"{row['wall_s']:.2f}",
            f"{row['peak_rss_mb']:,.0f}",
            f"{row['train_tokens']:,}",
        )
    Console().print(table)
    worst = max(row["peak_rss_mb"] for row in rows)
    verdict = "met" if worst < TARGET_RSS_MB else "MISSED"
    console.print(f"peak RSS target < {TARGET_RSS_MB} MB: {verdict} ({worst:,.0f} MB)")
    result = {
        "benchmark": "loading",
        "quick": quick,
        "input": {"source": str(source), "copies": copies, "bytes": int(size_mb * 1e6)},
        "steps": steps,
        "threads": threads,  # the children's --threads; None: torch's own choice
        "runs": rows,
        "target_peak_rss_mb": TARGET_RSS_MB,
    }
    console.print(f"wrote {write_results(out, result)}")


if __name__ == "__main__":
    main()
