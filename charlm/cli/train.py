"""`charlm train`: options grouped by the part of the pipeline they configure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from charlm.api import train_book
from charlm.cli import Duration, cli, stderr_console
from charlm.device import DEVICE_CHOICES
from charlm.models import CELLS, NONLINEARITIES
from charlm.progress import make_reporter
from charlm.training import ITERATORS, TrainConfig

_defaults = TrainConfig()


def _apply(options: list) -> Any:
    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


data_options = _apply([
    click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1,
                 show_default=True,
                 help="Fraction at the end of the book held out for validation."),
])

model_options = _apply([
    click.option("--model", "cell", type=click.Choice(list(CELLS)), default="lstm",
                 show_default=True, help="Recurrent cell."),
    click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True,
                 help="Number of stacked recurrent layers."),
    click.option("--hidden", type=click.IntRange(min=1), default=512, show_default=True,
                 help="Hidden units per layer."),
    click.option("--embed", type=click.IntRange(min=1), default=64, show_default=True,
                 help="Size of the token embedding."),
    click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1,
                 show_default=True, help="Dropout between stacked layers."),
    click.option("--embed-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
                 show_default=True, help="Dropout on the embedded input tokens."),
    click.option("--output-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
                 show_default=True, help="Dropout on the last layer's output, before the head."),
    click.option("--tie-weights/--no-tie-weights", default=False, show_default=True,
                 help="Share the embedding matrix with the output layer (needs --embed = "
                      "--hidden)."),
    click.option("--nonlinearity", type=click.Choice(NONLINEARITIES), default="tanh",
                 show_default=True, help="Activation of --model rnn (GRU/LSTM have gates)."),
])

training_options = _apply([
    click.option("--seq-len", type=click.IntRange(min=1), default=_defaults.seq_len,
                 show_default=True, help="Tokens per sequence: how far back gradients flow."),
    click.option("--batch-size", type=click.IntRange(min=1), default=_defaults.batch_size,
                 show_default=True, help="Sequences per batch."),
    click.option("--epochs", type=click.IntRange(min=1), default=_defaults.epochs,
                 show_default=True, help="Passes over the training text."),
    click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=_defaults.lr,
                 show_default=True, help="Adam learning rate."),
    click.option("--clip", type=click.FloatRange(min=0, min_open=True), default=_defaults.clip,
                 show_default=True,
                 help="Largest allowed gradient norm θ: g ← min(1, θ/‖g‖)·g."),
    click.option("--iterator", type=click.Choice(ITERATORS), default=_defaults.iterator,
                 show_default=True,
                 help="sequential: rows continue across batches and the state is carried; "
                      "random: random subsequences, fresh state every batch."),
    click.option("--max-time", type=Duration(), default=None,
                 help="Stop after this much training time, e.g. 300, 10m, 1h.  [default: none]"),
    click.option("--max-steps", type=click.IntRange(min=1), default=None,
                 help="Stop after this many optimizer steps.  [default: none]"),
    click.option("--seed", type=int, default=_defaults.seed, show_default=True,
                 help="Seed for weights, batch order and dropout."),
])

run_options = _apply([
    click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto",
                 show_default=True, help="auto uses a CUDA GPU when there is one."),
    click.option("--out", type=click.Path(path_type=Path), default=None,
                 help="Checkpoint directory.  [default: checkpoints/<book name>]"),
])

MODEL_KEYS = {"cell": "cell", "layers": "num_layers", "hidden": "hidden_size",
              "embed": "embed_size", "dropout": "dropout", "embed_dropout": "embed_dropout",
              "output_dropout": "output_dropout", "tie_weights": "tie_weights",
              "nonlinearity": "nonlinearity"}
TRAINING_KEYS = {"seq_len", "batch_size", "epochs", "lr", "clip", "iterator", "max_time",
                 "max_steps", "seed"}


@cli.command()
@click.argument("book", type=click.Path(path_type=Path))
@data_options
@model_options
@training_options
@run_options
def train(book: Path, val_fraction: float, device: str, out: Path | None, **options: Any) -> None:
    """Train a model on BOOK (a UTF-8 text file) and save it as a checkpoint.

    Shows live perplexity while training; ends, whatever stops it (epochs, --max-time,
    --max-steps or Ctrl-C), with a validation pass and a saved checkpoint.
    """
    model = {MODEL_KEYS[k]: v for k, v in options.items() if k in MODEL_KEYS}
    training = TrainConfig(**{k: v for k, v in options.items() if k in TRAINING_KEYS})
    console = stderr_console()
    with make_reporter(console) as reporter:
        trained = train_book(
            book,
            out=out,
            model=model,
            training=training,
            val_fraction=val_fraction,
            device=device,
            reporter=reporter,
        )
    result = trained.result
    val = "-" if result.val_perplexity is None else f"{result.val_perplexity:.3f}"
    rate = result.tokens_seen / max(result.train_seconds, 1e-9)
    console.print(
        f"saved [bold]{trained.checkpoint}[/] ({trained.num_parameters:,} parameters, "
        f"{result.steps} steps, {rate:,.0f} tokens/s): train perplexity "
        f"{result.train_perplexity:.3f}, validation perplexity {val}"
    )
    console.print(f"sample from it with: charlm generate {trained.checkpoint}")
