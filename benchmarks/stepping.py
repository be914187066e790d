"""The one-token step: weights laid out for it against PyTorch's cell functions.

    python -m benchmarks.stepping                   # LSTM, GRU and RNN widths; 1 to 64 rows
    python -m benchmarks.stepping --threads 2
    python -m benchmarks.stepping --quick           # small shapes, few rounds: a smoke run for CI

`RNNLM.step` steps PyTorch's layers on their weights laid out for single steps
(`FusedWeights`, charlm/models/stepping.py); before, it ran PyTorch's cell functions
(`torch.lstm_cell`, ...) on the layer's own weights. The laid-out step's gain is largest at
one to three rows; from four rows on the two are close, and for a while charlm stepped a wide
LSTM's many rows with the cell functions (docs/benchmarks.md). This measures both ways, so
that the choice can be checked on another CPU:

1. The network's step alone (random weights, embedding 64), for each layer shape and number
   of rows: median µs of --repeats interleaved rounds of --steps steps, and the cell
   functions' time over the laid-out step's (above 1: the laid-out step is faster).
2. The sampler (`Sampler.generate`, temperature 1, 60 tokens, `num_samples` rows) of a 2 x 512
   LSTM, charlm's against the same model stepped with the cell functions, in tokens per second.

Tables go to stdout, everything to benchmarks/results/stepping.json.
"""

from __future__ import annotations

import statistics
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from benchmarks.common import (
    RESULTS_DIR,
    BenchmarkCommand,
    print_table,
    results_option,
    write_results,
)
from benchmarks.earlier_steps import CellSteps, step_layers
from benchmarks.train_overhead import threads
from charlm.models import RNNLM, ModelConfig
from charlm.models.stepping import FusedWeights
from charlm.sampling import Sampler
from charlm.tokenizers.char import CharTokenizer

RESULTS = RESULTS_DIR / "stepping.json"
EMBED = 64
FULL = {
    "shapes": [("lstm", 1, 256), ("lstm", 2, 256), ("lstm", 2, 384), ("lstm", 1, 512),
               ("lstm", 2, 512), ("lstm", 1, 768), ("gru", 2, 512), ("rnn", 2, 512)],
    "rows": [1, 2, 3, 4, 8, 16, 64],
    "samples": [1, 4, 16, 64],
    "tokens": 60,
}  # fmt: skip
QUICK = {"shapes": [("lstm", 1, 32), ("gru", 1, 32)], "rows": [1, 4], "samples": [1, 4],
         "tokens": 5}  # fmt: skip


def interleaved(ways: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each way's call over `repeats` rounds, each round starting with
    another way, after one untimed call of each."""
    for way in ways.values():
        way()
    names, times = list(ways), {name: [] for name in ways}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            ways[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def step_times(cell: str, layers: int, hidden: int, rows: int, repeats: int, steps: int) -> dict:
    """The step alone of one layer shape at `rows` rows, both ways (µs)."""
    layer = getattr(nn, cell.upper())(EMBED, hidden, layers).eval()
    fused = FusedWeights(layer)
    x = torch.randn(rows, EMBED)
    zeros = torch.zeros(layers, rows, hidden)
    state = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def run(step: Callable[[], Any]) -> Callable[[], None]:
        def many() -> None:
            for _ in range(steps):
                step()

        return many

    with torch.inference_mode():
        seconds = interleaved(
            {
                "laid_out": run(lambda: fused.step(x, state)),
                "cell_fn": run(lambda: step_layers(layer, x, state)),
            },
            repeats,
        )
    us = {name: s / steps * 1e6 for name, s in seconds.items()}
    return {
        "shape": f"{cell} {layers} x {hidden}", "rows": rows, **us,
        "cell_fn_over_laid_out": us["cell_fn"] / us["laid_out"],
    }  # fmt: skip


def sampler_speeds(samples: list[int], tokens: int, repeats: int, hidden: int) -> list[dict]:
    """Tokens/s of a 2 x `hidden` LSTM sampler, charlm's against the cell functions' step."""
    tokenizer = CharTokenizer(list(string.printable))
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(tokenizer.vocab_size, hidden_size=hidden, embed_size=EMBED))
    charlm = Sampler(model, tokenizer, torch.device("cpu"))
    cells = Sampler(CellSteps(charlm.model), tokenizer, torch.device("cpu"))
    rows = []
    for n in samples:
        seconds = interleaved(
            {name: lambda s=sampler, n=n: s.generate("It was", tokens, 1.0, 0, num_samples=n)
             for name, sampler in (("charlm", charlm), ("cell_fn", cells))},
            repeats,
        )  # fmt: skip
        speed = {name: tokens * n / s for name, s in seconds.items()}
        rows.append({"num_samples": n, **speed, "charlm_over_cell_fn": speed["charlm"]
                     / speed["cell_fn"]})  # fmt: skip
    return rows


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="Small shapes and few rounds (a smoke run).")
@click.option("--repeats", type=click.IntRange(min=1), default=9, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=30, show_default=True,
              help="Steps per round of the step alone.")  # fmt: skip
@click.option("--threads", "thread_count", type=click.IntRange(min=1), default=1, show_default=True)
@results_option(RESULTS)
def main(quick: bool, repeats: int, steps: int, thread_count: int, out: Path) -> None:
    """Time the laid-out step against the cell functions, alone and in the sampler."""
    settings = QUICK if quick else FULL
    repeats, steps = (min(repeats, 2), min(steps, 3)) if quick else (repeats, steps)
    with threads(thread_count):
        step_rows = [
            step_times(cell, layers, hidden, rows, repeats, steps)
            for cell, layers, hidden in settings["shapes"]
            for rows in settings["rows"]
        ]
        samplers = sampler_speeds(
            settings["samples"], settings["tokens"], repeats, 32 if quick else 512
        )
    print_table(
        ["layer", "rows", "laid out µs", "cell fn µs", "cell fn / laid out"],
        [(r["shape"], r["rows"], f"{r['laid_out']:,.0f}", f"{r['cell_fn']:,.0f}",
          f"{r['cell_fn_over_laid_out']:.2f}") for r in step_rows],
    )  # fmt: skip
    print()
    print_table(
        ["num_samples", "charlm tok/s", "cell fn tok/s", "charlm / cell fn"],
        [(r["num_samples"], f"{r['charlm']:,.0f}", f"{r['cell_fn']:,.0f}",
          f"{r['charlm_over_cell_fn']:.2f}x") for r in samplers],
    )  # fmt: skip
    write_results(
        out,
        {"threads": thread_count, "quick": quick,
         "repeats": repeats, "steps": steps, "step": step_rows, "sampler": samplers},
    )  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
