"""The options of `charlm train`.

Most come from the config dataclasses (DataOptions, ModelConfig, TrainConfig), which define
each option's name, default and help once (charlm/options.py); the few declared here are
arguments of `charlm.train_book` itself: the tokenizer, the device, where to save.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from charlm.cli.options import config_options
from charlm.data import DataOptions
from charlm.device import DEVICE_CHOICES
from charlm.models import ModelConfig
from charlm.training import TrainConfig


def _apply(options: list) -> Any:
    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


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

run_control_options = _apply(
    [
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="CPU threads for tensor maths.  [default: PyTorch's choice]",
        ),
        click.option(
            "--resume",
            type=click.Path(path_type=Path),
            default=None,
            help="Continue the run saved in this checkpoint directory exactly where it "
            "stopped (BOOK, model and settings come from it).",
        ),
        click.option(
            "--init-from",
            type=click.Path(path_type=Path),
            default=None,
            help="Start a new run from this checkpoint's weights and tokenizer "
            "(fine-tuning on a new BOOK).",
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
        click.option(
            "--overwrite",
            is_flag=True,
            default=False,
            show_default=True,
            help="Replace the model already in the checkpoint directory (without this, "
            "training into one that holds a model is refused; --resume continues it).",
        ),
    ]
)


def train_options(command: Any) -> Any:
    """Every option of `charlm train`, in the order --help lists them."""
    for group in reversed(
        [
            config_options(DataOptions),
            tokenizer_options,
            config_options(ModelConfig),
            config_options(TrainConfig),
            run_control_options,
            run_options,
        ]
    ):
        command = group(command)
    return command


STOP_EXIT_CODES = {"interrupted": 130, "terminated": 143}
