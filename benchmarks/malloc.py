"""What charlm's allocator tuning (charlm/training/allocator.py) is worth, A against B.

    python -m benchmarks.malloc                  # configs a and c of train_overhead, 5 rounds
    python -m benchmarks.malloc --configs c --rounds 9 --threads 1
    python -m benchmarks.malloc --quick          # a tiny model, one round: a smoke run for CI

A mallopt setting cannot be taken back inside a process, so every measurement is a fresh
process that runs `charlm.training.train` exactly as train_overhead's charlm side does, with
the tuning (charlm's behaviour) or without it (glibc's defaults). The two alternate, round
after round, so a machine that slows down or speeds up during the run affects both alike; the
table gives the median tokens/s of each and their ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import torch

from benchmarks.common import (
    RESULTS_DIR,
    BenchmarkCommand,
    median,
    names_from,
    print_table,
    results_option,
    write_results,
)
from benchmarks.train_overhead import CONFIGS, QUICK, charlm_run, token_ids
from charlm.training import loop as training

RESULTS = RESULTS_DIR / "malloc.json"
SETTINGS = ("glibc defaults", "tuned")


def child(config: str, tuned: bool, threads: int) -> float:
    """In this fresh process: tokens/s of charlm's training loop on `config`."""
    if not tuned:
        training.keep_freed_memory = lambda: False  # this child process only
    torch.set_num_threads(threads)
    shape = QUICK if config == QUICK.name else CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        return charlm_run(shape, token_ids(shape), Path(tmp))[0]  # wall time, as it was


def measure_in_child(config: str, tuned: bool, threads: int) -> float:
    command = [sys.executable, "-m", "benchmarks.malloc", "--child", config, "--threads",
               str(threads)] + (["--tuned"] if tuned else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"the {config} child failed: {done.stderr.strip()[-300:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_s"])


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny model and one round (for CI).")
@click.option(
    "--configs",
    default="a,c",
    show_default=True,
    callback=names_from(CONFIGS),
    help="train_overhead configs.",
)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@results_option(RESULTS)
@click.option("--child", "child_config", default=None, hidden=True)
@click.option("--tuned", is_flag=True, hidden=True)
def main(
    quick: bool,
    configs: str,
    threads: int,
    rounds: int,
    out: Path,
    child_config: str | None,
    tuned: bool,
) -> None:
    """charlm's training loop with and without its malloc tuning, in alternating processes."""
    if child_config:
        print(json.dumps({"tokens_per_s": child(child_config, tuned, threads)}))
        return
    names = [QUICK.name] if quick else [c.strip() for c in configs.split(",")]
    rounds = 1 if quick else rounds
    rows = []
    for name in names:
        rates: dict[str, list[float]] = {s: [] for s in SETTINGS}
        for _ in range(rounds):
            for setting in SETTINGS:
                rates[setting].append(measure_in_child(name, setting == "tuned", threads))
        default, tuned_rate = median(rates["glibc defaults"]), median(rates["tuned"])
        rows.append({"config": name, "threads": threads, "rounds": rounds,
                     "default_tokens_per_s": default, "tuned_tokens_per_s": tuned_rate,
                     "speedup": tuned_rate / default, "runs": rates})  # fmt: skip
    print_table(
        ["config", "threads", "glibc defaults tok/s", "tuned tok/s", "speed-up"],
        [
            (
                r["config"],
                r["threads"],
                r["default_tokens_per_s"],
                r["tuned_tokens_per_s"],
                f"{r['speedup']:.3f}",
            )
            for r in rows
        ],
    )
    write_results(out, {"quick": quick, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
