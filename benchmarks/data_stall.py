"""Data-stall benchmark: how much of a training step is spent outside the model's work.

    python -m benchmarks.data_stall            # tinyshakespeare (or a synthetic text), 3 models
    python -m benchmarks.data_stall --quick    # a tiny model and few steps: a smoke run for CI

Runs the real training loop (`charlm.training.train`) and compares its training time (wall
clock between steps: making batches, moving them, the schedule, logging, stop checks, and the
step itself) with the time inside forward, backward and the optimizer step. The difference,
as a fraction of the training time, is the stall (target on CPU: under 5%). Both iterators are
measured. On a GPU the inside time is only the time to queue the work, so use it on CPU.
Tables go to stdout, everything to benchmarks/results/data_stall.json.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    results_option,
    threads_option,
    write_results,
)
from charlm.corpus import read_book
from charlm.models import ModelConfig, build_model
from charlm.tokenizers import get_tokenizer_class
from charlm.training import TrainConfig, train

RESULTS = RESULTS_DIR / "data_stall.json"
BOOK = CORPORA / "tinyshakespeare" / "input.txt"
FULL = {
    "models": [("gru", 128, 1), ("lstm", 256, 2), ("lstm", 512, 2)],
    "steps": 60,
    "batch": (32, 100),
}
QUICK = {"models": [("gru", 32, 1)], "steps": 10, "batch": (8, 32)}
TARGET = 0.05


def token_ids(quick: bool) -> np.ndarray:
    text = read_book(BOOK).text if BOOK.is_file() and not quick else _synthetic_text()
    return get_tokenizer_class("char").train(text).encode_array(text)


def _synthetic_text() -> str:
    rng = np.random.default_rng(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs"]
    return " ".join(rng.choice(words, 20_000))


def measure(
    ids: np.ndarray, cell: str, hidden: int, layers: int, iterator: str, plan: dict
) -> dict:
    vocab = int(ids.max()) + 1
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab, cell=cell, hidden_size=hidden, num_layers=layers))
    batch_size, seq_len = plan["batch"]
    config = TrainConfig(batch_size, seq_len, max_steps=plan["steps"], iterator=iterator)
    warm_up = TrainConfig(batch_size, seq_len, max_steps=3)
    train(model, ids, None, warm_up, device=torch.device("cpu"))
    result = train(model, ids, None, config, device=torch.device("cpu"))
    stall = 1.0 - result.compute_seconds / result.train_seconds
    return {
        "model": f"{cell} {layers}x{hidden}",
        "iterator": iterator,
        "steps": result.steps,
        "ms_per_step": 1000 * result.train_seconds / result.steps,
        "stall_fraction": stall,
        "tokens_per_s": result.tokens_seen / result.train_seconds,
    }


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny model and few steps (for CI).")
@results_option(RESULTS)
@threads_option()
def main(quick: bool, out: Path, threads: int | None) -> None:
    """Measure the fraction of CPU training time spent outside forward/backward/optimizer."""
    if threads:
        torch.set_num_threads(threads)
    plan = QUICK if quick else FULL
    ids = token_ids(quick)
    rows = [
        measure(ids, cell, hidden, layers, iterator, plan)
        for cell, hidden, layers in plan["models"]
        for iterator in ("sequential", "random")
    ]
    print(f"data stall: training time outside forward/backward/optimizer (target < {TARGET:.0%})")
    print(f"{'model':<14}{'iterator':<12}{'ms/step':>10}{'tokens/s':>12}{'stall':>9}")
    for row in rows:
        print(
            f"{row['model']:<14}{row['iterator']:<12}{row['ms_per_step']:>10.1f}"
            f"{row['tokens_per_s']:>12,.0f}{row['stall_fraction']:>9.2%}"
        )
    book = str(BOOK) if BOOK.is_file() else "synthetic"
    meta = {"threads": torch.get_num_threads(), "book": book}
    print(f"wrote {write_results(out, {'quick': quick, 'meta': meta, 'rows': rows})}")


if __name__ == "__main__":
    main()
