"""The options of `charlm train`, under the headings --help lists them by.

Most come from the config dataclasses (DataOptions, ModelConfig, TrainConfig), which define
each option's name, default and help once (charlm/options.py); the few declared here are
arguments of `charlm.train_book` itself: the tokenizer, the device, where to save; and
--recipe, which sets the defaults of the others from a named recipe (recipes.toml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from charlm.cli.options import (
    NonEmptyPath,
    config_options,
    device_option,
    grouped,
    threads_option,
)
from charlm.data import DataOptions
from charlm.errors import ConfigError
from charlm.models import ModelConfig
from charlm.training import TrainConfig
from charlm.training.config import OUTPUT, RUN_CONTROL
from charlm.training.recipes import recipe, recipes
from charlm.training.run import RESUME_OVERRIDES

DATA, MODEL, OPTIMISATION = "Data", "Model", "Optimisation"


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


def _use_recipe(ctx: click.Context, param: click.Parameter, name: str | None) -> str | None:
    """Make the recipe's values the defaults of this command line (an option typed on it
    still wins: Click takes a value from `default_map` only for an option not given)."""
    if name is None:
        return None
    if name == "list":
        click.echo(recipe_list())
        ctx.exit()
    try:
        chosen = recipe(name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    by_flag = {flag: p.name for p in ctx.command.params for flag in (*p.opts, *p.secondary_opts)}
    defaults = {}
    for key, value in chosen.options.items():
        if isinstance(value, dict):  # tokenizer-option = {split = "spaces"}
            value = [f"{k}={v}" for k, v in value.items()]
        defaults[by_flag[f"--{key}"]] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return chosen.name


def recipe_list() -> str:
    """Every recipe: its name, what it is for, and the options it stands for."""
    lines = []
    for item in recipes().values():
        lines.append(f"{item.name}: {item.description}")
        lines.append(f"    {item.command_line() or '(the defaults of charlm train --help)'}")
    return "\n".join(lines)


recipe_option = grouped(
    "Recipe",
    "--recipe",
    metavar="NAME",
    default=None,
    is_eager=True,
    callback=_use_recipe,
    help=f"Start from a named set of options: {', '.join(recipes())}; `--recipe list` shows "
    "what each sets. Options given on the command line win over the recipe's.  "
    "[default: none]",
)

tokenizer_options = _apply(
    [
        grouped(
            DATA,
            "--tokenizer",
            default=None,
            help="How the book is cut into tokens: char, byte, word, bpe, wordpiece, "
            "unigram, hf or a plugin; `charlm tokenizers` lists them. With --init-from: "
            "the run's own vocabulary, the model's token rows carried over by their text.  "
            "[default: char; with --task classify, word when the examples are sentences; "
            "with --init-from, the model's]",
        ),
        grouped(
            DATA,
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
        threads_option(RUN_CONTROL),
        device_option(RUN_CONTROL),
        grouped(
            RUN_CONTROL,
            "--resume",
            type=NonEmptyPath(path_type=Path),
            default=None,
            help="Continue the run saved in this checkpoint directory exactly where it "
            "stopped (BOOK, model and settings come from it: only "
            + ", ".join("--" + name.replace("_", "-") for name in RESUME_OVERRIDES)
            + " may change, and a BOOK given must be the same text).",
        ),
        grouped(
            RUN_CONTROL,
            "--init-from",
            type=NonEmptyPath(path_type=Path),
            multiple=True,
            help="Start a new run from this checkpoint's weights and tokenizer "
            "(fine-tuning on a new BOOK). With --task classify, a language model's encoder; "
            "given twice, a forward and a backward (--reverse) LM for --bidirectional.",
        ),
    ]
)

output_options = _apply(
    [
        grouped(
            OUTPUT,
            "--out",
            type=NonEmptyPath(path_type=Path),
            default=None,
            help="Checkpoint directory.  [default: checkpoints/<book name>]",
        ),
        grouped(
            OUTPUT,
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
    """Every option of `charlm train`, in the order --help lists them, under its heading."""
    for group in reversed(
        [
            recipe_option,
            config_options(DataOptions, group=DATA),
            tokenizer_options,
            config_options(ModelConfig, group=MODEL),
            config_options(TrainConfig, group=OPTIMISATION),
            run_control_options,
            output_options,
        ]
    ):
        command = group(command)
    return command
