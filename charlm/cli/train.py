"""`charlm train`: options grouped by the part of the pipeline they configure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from charlm.api import train_book
from charlm.cli import Duration, cli, stderr_console
from charlm.device import DEVICE_CHOICES
from charlm.models import CELLS, IMPLS
from charlm.progress import make_reporter
from charlm.training import ITERATORS, TrainConfig

_defaults = TrainConfig()


def _apply(options: list) -> Any:
    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


data_options = _apply(
    [
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
            help="Fraction at the end of each book held out for validation (ignored with --val).",
        ),
        click.option(
            "--test-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Fraction at the very end of each book held out for a final test "
            "perplexity (ignored with --test).",
        ),
        click.option(
            "--val",
            "val_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Validation text from this file instead of each book's tail.  [default: none]",
        ),
        click.option(
            "--test",
            "test_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Test text from this file, scored once after training.  [default: none]",
        ),
        click.option(
            "--encoding",
            default=None,
            help="Read the books in this encoding (e.g. cp1252, gb18030) instead of "
            "detecting it.  [default: detect]",
        ),
        click.option(
            "--keep-boilerplate",
            is_flag=True,
            default=False,
            show_default=True,
            help="Keep the Project Gutenberg header and licence instead of removing them.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Where encoded corpora are cached.  [default: $CHARLM_CACHE or ~/.cache/charlm]",
        ),
        click.option(
            "--no-cache",
            is_flag=True,
            default=False,
            show_default=True,
            help="Tokenize in memory; neither read nor write the token cache.",
        ),
    ]
)


def _key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """`--tokenizer-option` values as a dict; the value stays a string for the tokenizer."""
    options = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. vocab_size=4000)")
        options[key.strip()] = value
    return options


tokenizer_options = _apply(
    [
        click.option(
            "--tokenizer",
            default="char",
            show_default=True,
            help="How the book is cut into tokens: char, byte, word, bpe, wordpiece, "
            "unigram, hf or a plugin; `charlm tokenizers` lists them.",
        ),
        click.option(
            "--tokenizer-option",
            "tokenizer_options",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_key_values,
            help="A training option of the tokenizer, e.g. vocab_size=4000; repeatable.  "
            "[default: none]",
        ),
    ]
)

model_options = _apply(
    [
        click.option(
            "--model",
            "cell",
            type=click.Choice(list(CELLS)),
            default="lstm",
            show_default=True,
            help="Recurrent cell.",
        ),
        click.option(
            "--impl",
            type=click.Choice(list(IMPLS)),
            default="torch",
            show_default=True,
            help="torch: PyTorch's fast layers; scratch: the same cells written out from "
            "the textbook equations (slower, same numbers).",
        ),
        click.option(
            "--one-hot",
            is_flag=True,
            default=False,
            show_default=True,
            help="Feed one-hot vectors of vocabulary size instead of an embedding "
            "(--embed is then unused).",
        ),
        click.option(
            "--layers",
            type=click.IntRange(min=1),
            default=2,
            show_default=True,
            help="Number of stacked recurrent layers.",
        ),
        click.option(
            "--hidden",
            type=click.IntRange(min=1),
            default=512,
            show_default=True,
            help="Hidden units per layer.",
        ),
        click.option(
            "--embed",
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="Size of the token embedding.",
        ),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
            help="Dropout between stacked layers.",
        ),
    ]
)

training_options = _apply(
    [
        click.option(
            "--seq-len",
            type=click.IntRange(min=1),
            default=_defaults.seq_len,
            show_default=True,
            help="Tokens per sequence: how far back gradients flow.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=_defaults.batch_size,
            show_default=True,
            help="Sequences per batch.",
        ),
        click.option(
            "--epochs",
            type=click.IntRange(min=1),
            default=_defaults.epochs,
            show_default=True,
            help="Passes over the training text.",
        ),
        click.option(
            "--lr",
            type=click.FloatRange(min=0, min_open=True),
            default=_defaults.lr,
            show_default=True,
            help="Adam learning rate.",
        ),
        click.option(
            "--clip",
            type=click.FloatRange(min=0, min_open=True),
            default=_defaults.clip,
            show_default=True,
            help="Largest allowed gradient norm θ: g ← min(1, θ/‖g‖)·g.",
        ),
        click.option(
            "--iterator",
            type=click.Choice(ITERATORS),
            default=_defaults.iterator,
            show_default=True,
            help="sequential: rows continue across batches and the state is carried; "
            "random: random subsequences, fresh state every batch.",
        ),
        click.option(
            "--max-time",
            type=Duration(),
            default=None,
            help="Stop after this much training time, e.g. 300, 10m, 1h.  [default: none]",
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(min=1),
            default=None,
            help="Stop after this many optimizer steps.  [default: none]",
        ),
        click.option(
            "--seed",
            type=int,
            default=_defaults.seed,
            show_default=True,
            help="Seed for weights, batch order and dropout.",
        ),
    ]
)

run_options = _apply(
    [
        click.option(
            "--device",
            type=click.Choice(DEVICE_CHOICES),
            default="auto",
            show_default=True,
            help="auto uses a CUDA GPU when there is one.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            default=None,
            help="Checkpoint directory.  [default: checkpoints/<book name>]",
        ),
    ]
)

MODEL_KEYS = {
    "cell": "cell",
    "impl": "impl",
    "one_hot": "one_hot",
    "layers": "num_layers",
    "hidden": "hidden_size",
    "embed": "embed_size",
    "dropout": "dropout",
}
TRAINING_KEYS = {
    "seq_len",
    "batch_size",
    "epochs",
    "lr",
    "clip",
    "iterator",
    "max_time",
    "max_steps",
    "seed",
}


DATA_KEYS = {
    "val_fraction",
    "test_fraction",
    "val_file",
    "test_file",
    "encoding",
    "keep_boilerplate",
    "cache_dir",
}


@cli.command()
@click.argument("books", nargs=-1, required=True)
@data_options
@tokenizer_options
@model_options
@training_options
@run_options
def train(
    books: tuple[str, ...], device: str, out: Path | None, no_cache: bool, **options: Any
) -> None:
    """Train a model on BOOKS and save it as a checkpoint.

    BOOKS are text files, directories (their .txt files), glob patterns or names from the
    book catalogue ('charlm corpus list'; downloaded when needed), in any common encoding.

    Shows live perplexity while training; ends, whatever stops it (epochs, --max-time,
    --max-steps or Ctrl-C), with a validation pass and a saved checkpoint.
    """
    data = {k: v for k, v in options.items() if k in DATA_KEYS}
    model = {MODEL_KEYS[k]: v for k, v in options.items() if k in MODEL_KEYS}
    training = TrainConfig(**{k: v for k, v in options.items() if k in TRAINING_KEYS})
    console = stderr_console()
    with make_reporter(console) as reporter:
        trained = train_book(
            list(books),
            out=out,
            tokenizer=options["tokenizer"],
            tokenizer_options=options["tokenizer_options"],
            model=model,
            training=training,
            use_cache=not no_cache,
            **data,
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
