"""What charlm's allocator tuning (charlm/training/allocator.py) is worth, against glibc's
defaults and against its first version (blocks up to 32 MiB kept in the heap, larger ones
still mapped at every step).

    python -m benchmarks.malloc                  # configs a, b and c of train_overhead, 5 rounds
    python -m benchmarks.malloc --configs c --rounds 9 --threads 1
    python -m benchmarks.malloc --quick          # a tiny model, one round: a smoke run for CI

A mallopt setting cannot be taken back inside a process, so every measurement is a fresh
process that runs `charlm.training.train` exactly as train_overhead's charlm side does, with
each setting in turn, round after round, so a machine that slows down or speeds up during the
run affects all alike. The table gives the median tokens/s of each, the tuning's speed-up over
each other setting, and the peak resident memory of the process (the price of keeping freed
blocks).
"""

from __future__ import annotations

import json
import resource
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
from charlm.training.allocator import HEAP_UP_TO_THRESHOLD, TUNING, keep_freed_memory

RESULTS = RESULTS_DIR / "malloc.json"
# The mallopt settings each child applies; "tuned" is charlm's.
SETTINGS = {"glibc defaults": (), "heap up to 32 MiB": HEAP_UP_TO_THRESHOLD, "tuned": TUNING}


def child(config: str, setting: str, threads: int) -> dict[str, float]:
    """In this fresh process: tokens/s of charlm's training loop on `config`, and the
    process's peak resident memory in MiB."""
    chosen = SETTINGS[setting]
    training.keep_freed_memory = lambda _: keep_freed_memory(chosen)  # this child only
    torch.set_num_threads(threads)
    shape = QUICK if config == QUICK.name else CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        rate = charlm_run(shape, token_ids(shape), Path(tmp))[0]  # wall time, as it was
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"tokens_per_s": rate, "peak_rss_mib": peak_kib / 1024}


def measure_in_child(config: str, setting: str, threads: int) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.malloc", "--child", config, "--threads",
               str(threads), "--setting", setting]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"the {config} child failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny model and one round (for CI).")
@click.option(
    "--configs",
    default="a,b,c",
    show_default=True,
    callback=names_from(CONFIGS),
    help="train_overhead configs.",
)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@results_option(RESULTS)
@click.option("--child", "child_config", default=None, hidden=True)
@click.option("--setting", type=click.Choice(list(SETTINGS)), default="tuned", hidden=True)
def main(
    quick: bool,
    configs: str,
    threads: int,
    rounds: int,
    out: Path,
    child_config: str | None,
    setting: str,
) -> None:
    """charlm's training loop under each malloc setting, in alternating processes."""
    if child_config:
        print(json.dumps(child(child_config, setting, threads)))
        return
    names = [QUICK.name] if quick else [c.strip() for c in configs.split(",")]
    rounds = 1 if quick else rounds
    rows = []
    for name in names:
        runs: dict[str, list[dict[str, float]]] = {s: [] for s in SETTINGS}
        for _ in range(rounds):
            for setting in SETTINGS:
                runs[setting].append(measure_in_child(name, setting, threads))
        rates = {s: median([r["tokens_per_s"] for r in found]) for s, found in runs.items()}
        peaks = {s: median([r["peak_rss_mib"] for r in found]) for s, found in runs.items()}
        speedup = {s: rates["tuned"] / rates[s] for s in SETTINGS if s != "tuned"}
        rows.append({"config": name, "threads": threads, "rounds": rounds,
                     "tokens_per_s": rates, "speedup": speedup, "peak_rss_mib": peaks,
                     "runs": runs})  # fmt: skip
    print_table(
        ["config", "threads", *(f"{s} tok/s" for s in SETTINGS),
         *(f"tuned / {s}" for s in SETTINGS if s != "tuned"),
         *(f"{s} peak MiB" for s in SETTINGS)],
        [
            (r["config"], r["threads"], *r["tokens_per_s"].values(),
             *(f"{v:.3f}" for v in r["speedup"].values()), *r["peak_rss_mib"].values())
            for r in rows
        ],
    )  # fmt: skip
    write_results(out, {"quick": quick, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
