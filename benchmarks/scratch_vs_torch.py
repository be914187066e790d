"""Scratch cells vs PyTorch's layers on a real book: same seed, same loss curve, speed ratio.

    python -m benchmarks.scratch_vs_torch            # the Time Machine, 50 steps per run
    python -m benchmarks.scratch_vs_torch --quick    # a tiny model, a few steps (CI)

For each cell both implementations train from the same seed on the same batches; the table
shows the largest difference between their loss curves (the running training loss after each
step), the training speed of each, and how many times slower the scratch cells are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.common import CORPORA, RESULTS_DIR, BenchmarkCommand, results_option, write_results
from charlm.corpus import read_book
from charlm.device import DEVICE_CHOICES, resolve_device
from charlm.models import CELLS, ModelConfig, build_model, with_reference
from charlm.tokenizers import get_tokenizer_class
from charlm.training import EvalReport, StepReport, TrainConfig, train

DEFAULT_BOOK = CORPORA / "timemachine" / "timemachine.txt"
RESULTS = RESULTS_DIR / "scratch_vs_torch.json"
COMPARABLE = [spec.name for spec in with_reference(CELLS)]  # a cell without one has no torch run


class _Curve:
    """A reporter that keeps the training loss reported after every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def message(self, text: str) -> None:
        pass

    def on_step(self, report: StepReport) -> None:
        self.losses.append(report.train_loss)

    def on_eval(self, report: EvalReport) -> None:
        pass


def run_one(
    ids,
    vocab_size: int,
    cell: str,
    impl: str,
    sizes: dict[str, int],
    steps: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Train one model for `steps` steps; its loss curve and tokens per second."""
    config = ModelConfig(
        vocab_size=vocab_size,
        cell=cell,
        impl=impl,
        dropout=0.0,
        embed_size=sizes["embed"],
        hidden_size=sizes["hidden"],
        num_layers=sizes["layers"],
    )
    training = TrainConfig(
        batch_size=sizes["batch"], seq_len=sizes["seq_len"], max_steps=steps, seed=seed
    )
    torch.manual_seed(seed)
    model = build_model(config)
    curve = _Curve()
    result = train(model, ids, None, training, device=device, reporter=curve, report_interval_s=0)
    return {
        "losses": curve.losses,
        "tokens_per_s": result.tokens_seen / result.train_seconds,
        "train_seconds": result.train_seconds,
    }


@click.command(cls=BenchmarkCommand)
@click.option(
    "--book",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_BOOK,
    show_default=True,
    help="UTF-8 text to train on.",
)
@click.option("--quick", is_flag=True, help="Tiny model and few steps (for CI).")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Optimizer steps per run (--quick: 5).",
)
@click.option(
    "--cell",
    "cells",
    type=click.Choice(COMPARABLE),
    multiple=True,
    default=COMPARABLE,
    show_default=True,
    help="Cell to compare; repeat the option for several.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed runs per implementation; the fastest counts (--quick: 1).",
)
@click.option(
    "--hidden",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Hidden units per layer (--quick: 16).",
)
@click.option(
    "--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Stacked layers."
)
@click.option(
    "--seq-len",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Tokens per sequence (--quick: 10).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Sequences per batch (--quick: 4).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of both runs.")
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="cpu",
    show_default=True,
    help="Where to train; auto uses a CUDA GPU when there is one.",
)
@results_option(RESULTS)
def main(
    book: Path,
    quick: bool,
    steps: int,
    cells: tuple[str, ...],
    repeats: int,
    hidden: int,
    layers: int,
    seq_len: int,
    batch_size: int,
    seed: int,
    device: str,
    out: Path,
) -> None:
    """Compare --impl scratch with --impl torch: loss curves and speed."""
    if quick:
        steps, hidden, seq_len, batch_size, repeats = min(steps, 5), 16, 10, 4, 1
    sizes = {
        "embed": 32 if not quick else 8,
        "hidden": hidden,
        "layers": layers,
        "batch": batch_size,
        "seq_len": seq_len,
    }
    resolved = resolve_device(device)
    text = read_book(book).text
    tokenizer = get_tokenizer_class("char").train(text)
    ids = tokenizer.encode_array(text)
    rows = []
    for cell in cells:
        for impl in ("torch", "scratch"):  # warm-up: one-time costs stay out of the timings
            run_one(ids, tokenizer.vocab_size, cell, impl, sizes, 2, seed, resolved)
        # Alternate the implementations and keep each one's fastest repeat: on a busy
        # machine the least disturbed run is the best estimate of what the code can do.
        repeats_of = {"torch": [], "scratch": []}
        for _ in range(repeats):
            for impl in repeats_of:
                repeats_of[impl].append(
                    run_one(ids, tokenizer.vocab_size, cell, impl, sizes, steps, seed, resolved)
                )
        runs = {
            impl: max(done, key=lambda run: run["tokens_per_s"])
            for impl, done in repeats_of.items()
        }
        torch_run, scratch_run = runs["torch"], runs["scratch"]
        torch_losses, scratch_losses = torch_run["losses"], scratch_run["losses"]
        rows.append(
            {
                "cell": cell,
                "max_loss_difference": max(
                    abs(a - b) for a, b in zip(torch_losses, scratch_losses, strict=True)
                ),
                "final_loss": torch_losses[-1],
                "torch_tokens_per_s": torch_run["tokens_per_s"],
                "scratch_tokens_per_s": scratch_run["tokens_per_s"],
                "slowdown": torch_run["tokens_per_s"] / scratch_run["tokens_per_s"],
                "repeats_agree": all(
                    run["losses"] == done[0]["losses"]
                    for done in repeats_of.values()
                    for run in done
                ),
                "all_tokens_per_s": {
                    impl: [run["tokens_per_s"] for run in done] for impl, done in repeats_of.items()
                },
                "runs": runs,
            }
        )
    report = {
        "book": str(book),
        "steps": steps,
        "sizes": sizes,
        "seed": seed,
        "repeats": repeats,
        "device": str(resolved),
        "threads": torch.get_num_threads(),
        "quick": quick,
        "results": rows,
    }
    out = write_results(out, report)
    _print_table(report)
    Console().print(f"wrote {out}")


def _print_table(report: dict[str, Any]) -> None:
    sizes = report["sizes"]
    table = Table(
        title=f"scratch vs torch: {Path(report['book']).name}, {report['steps']} steps, "
        f"{sizes['layers']}x{sizes['hidden']}, batch {sizes['batch']}x"
        f"{sizes['seq_len']}, {report['device']}"
    )
    for name in (
        "cell",
        "max |Δ loss|",
        "final loss",
        "torch tok/s",
        "scratch tok/s",
        "scratch slower by",
    ):
        table.add_column(name, justify="right")
    for row in report["results"]:
        table.add_row(
            row["cell"],
            f"{row['max_loss_difference']:.2e}",
            f"{row['final_loss']:.4f}",
            f"{row['torch_tokens_per_s']:,.0f}",
            f"{row['scratch_tokens_per_s']:,.0f}",
            f"{row['slowdown']:.1f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
