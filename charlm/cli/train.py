"""`charlm train`: parse the options, run `charlm.train_book`, report the result.

Its options come from the config dataclasses (see train_options.py); the rules of a run
(what --resume may change, the checks made before reading books) are the library's.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.markup import escape

from charlm.checkpoint import CONFIG_NAME, GENERATIVE_NAME
from charlm.cli import cli, stderr_console
from charlm.cli.options import GroupedCommand, NonEmptyPath, config_values
from charlm.cli.train_options import train_options
from charlm.data import DataOptions
from charlm.errors import CharlmError, CheckpointError, ConfigError
from charlm.models import ModelConfig
from charlm.options import example_defaults, flag_name, option_fields
from charlm.training import TrainConfig, train_book, unused
from charlm.training.progress import make_reporter
from charlm.training.recipes import recipes
from charlm.training.run import check_settings, resumed_training, with_example_defaults
from charlm.training.signals import STOP_EXIT_CODES

# Where a value the user chose comes from: typed, or set by --recipe.
CHOSEN_SOURCES = (ParameterSource.COMMANDLINE, ParameterSource.DEFAULT_MAP)


@cli.command(cls=GroupedCommand)
@click.argument("books", nargs=-1, type=NonEmptyPath())
@train_options
@click.pass_context
def train(
    ctx: click.Context,
    books: tuple[str, ...],
    recipe: str | None,
    tokenizer: str | None,
    tokenizer_options: dict[str, str],
    device: str,
    out: Path | None,
    resume: Path | None,
    init_from: tuple[Path, ...],
    threads: int | None,
    overwrite: bool,
    **options: Any,
) -> None:
    """Train a model on BOOKS and save it as a checkpoint.

    BOOKS are text files, directories (their .txt files), glob patterns or names from the
    book catalogue ('charlm corpus list'; downloaded when needed), in any common encoding.

    Shows live perplexity while training and writes metrics.jsonl into the checkpoint.
    Epochs, --max-time, --max-steps and --patience end it with a validation pass and a saved
    checkpoint; Ctrl-C or SIGTERM save one and say how to continue with --resume.

    --recipe starts from a named set of options ('--recipe list' shows them), e.g.
    'charlm train book.txt --recipe tiny' to try things in seconds.

    Several GPUs or machines: torchrun --nproc-per-node N -m charlm train BOOKS ...
    """
    if not books and resume is None:
        raise click.UsageError("missing BOOKS (or --resume CHECKPOINT to continue a run)")
    others = (("--init-from", init_from), ("--out", out), ("--overwrite", overwrite))
    for other, given in (*others, ("--recipe", recipe)):
        if resume is not None and given:
            raise click.UsageError(
                f"--resume continues a run in its own directory with its own model and "
                f"settings; drop {other}"
            )
    init_from = list(init_from) or None
    try:  # every setting is checked now, before any book is read
        data = DataOptions(**config_values(DataOptions, options))
        model = config_values(ModelConfig, options)
        chosen = config_values(TrainConfig, options)
        given = {k for k in options if ctx.get_parameter_source(k) in CHOSEN_SOURCES}
        if data.example_unit is not None:
            # What neither the command line nor the recipe set takes the defaults for
            # short examples (for a classifier of them, if it has its own): the model's
            # once train_book knows what the examples are read as (words or characters).
            task = model["task"]
            model = _only(model, given) | {"task": task}
            chosen = {**example_defaults(TrainConfig, task), **_only(chosen, given)}
        if resume is not None:
            _check_resume_keeps(ctx, given)
            training = _only(chosen, given)  # the changes alone: train_book applies them
            resumed_training(resume, training)  # a change it cannot make is a usage error now
        else:
            training = TrainConfig(**chosen)
            training.check_start(model.get("task", "lm"), init_from)
            unused.check_before_reading(model, data, training, model.get("task", "lm"), init_from)
        check_settings(
            with_example_defaults(model, data), data, tokenizer, tokenizer_options,
            resume=resume, init_from=init_from,
        )  # fmt: skip
    except CheckpointError:
        raise  # a damaged --resume checkpoint is not a mistake in the command (exit 1)
    except CharlmError as exc:
        raise click.UsageError(str(exc)) from exc
    console = stderr_console()
    if recipe is not None and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0
        console.print(_recipe_line(ctx, recipe), markup=False)
    with make_reporter(console) as reporter:  # SIGTERM is Terminated here (cli.main)
        trained = train_book(
            list(books) or None,
            out=out,
            tokenizer=tokenizer,
            tokenizer_options=tokenizer_options,
            model=None if resume is not None else model,  # a resumed run keeps its own
            training=training,
            data=data,
            device=device,
            reporter=reporter,
            resume=resume,
            init_from=init_from,
            threads=threads,
            overwrite=overwrite,
        )
    if trained.rank != 0:
        return
    _report(console, trained)


def _recipe_line(ctx: click.Context, name: str) -> str:
    """What the recipe set, and which of its options the command line replaced."""
    by_name = {param.name: param for param in ctx.command.params}
    given = [
        by_name[key].opts[0]
        for key in ctx.default_map or {}
        if ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE
    ]
    line = f"recipe {name}: {recipes()[name].command_line() or 'the defaults'}"
    return line + (f" (given here instead: {', '.join(given)})" if given else "")


# Data options that are where this run keeps things, not what the model was trained on.
RESUME_LOCAL_DATA = {"cache_dir", "use_cache"}


def _check_resume_keeps(ctx: click.Context, given: set[str]) -> None:
    """Refuse the options a resumed run cannot honour: its model, tokenizer and data are the
    saved run's (as its training settings are, bar the stopping rules resumed_training allows)."""
    kept = [(f, spec) for f, spec in option_fields(ModelConfig) if f.name in given]
    kept += [
        (f, spec)
        for f, spec in option_fields(DataOptions)
        if f.name in given and f.name not in RESUME_LOCAL_DATA
    ]
    flags = [flag_name(f, spec) for f, spec in kept]
    flags += [
        flag
        for name, flag in (
            ("tokenizer", "--tokenizer"),
            ("tokenizer_options", "--tokenizer-option"),
        )
        if ctx.get_parameter_source(name) in CHOSEN_SOURCES
    ]
    if flags:
        raise ConfigError(
            f"a resumed run keeps its model, tokenizer and data, so {', '.join(flags)} cannot "
            "change; to train another model from this one, start a new run with --init-from"
        )


def _only(values: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """The entries of `values` the user chose."""
    return {k: v for k, v in values.items() if k in given}


def _report(console, trained) -> None:
    result = trained.result
    # What the lines below suggest is typed into a shell: paths and labels quoted for it
    # (a label may hold spaces), and printed as they are, not read as Rich markup.
    checkpoint = shlex.quote(str(trained.checkpoint))
    shown = escape(str(trained.checkpoint))
    if result.stopped_by in STOP_EXIT_CODES:
        # Under torchrun the same launch goes on: its own options, then the resume.
        launch = (
            "torchrun ... -m charlm" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "charlm"
        )
        console.print(
            f"{result.stopped_by} at step {result.steps}; saved [bold]{shown}[/]. "
            f"Continue with: {launch} train --resume {escape(checkpoint)}",
            soft_wrap=True,  # keep the command on one line, ready to copy
        )
        sys.exit(STOP_EXIT_CODES[result.stopped_by])
    if not trained.trained:
        console.print(f"{shown} is as it was: nothing was trained or saved")
        return
    val = "-" if result.val_perplexity is None else f"{result.val_perplexity:.3f}"
    rate = result.tokens_seen / max(result.train_seconds, 1e-9)
    steps = f"{result.steps:,} step{'' if result.steps == 1 else 's'}"
    console.print(
        f"saved [bold]{shown}[/] ({trained.num_parameters:,} parameters, "
        f"{steps}, {rate:,.0f} tokens/s): train perplexity "
        f"{result.train_perplexity:.3f}, validation perplexity {val}"
    )
    if trained.best is not None:
        best = f"perplexity {result.best_val_perplexity:.3f}"
        if result.best_val_accuracy is not None:  # a classifier keeps its most accurate
            best = f"accuracy {result.best_val_accuracy:.1%}"
        console.print(
            f"best validation {best} (step {result.best_step:,}) is kept in {trained.best}",
            markup=False,
        )
    label = shlex.quote(trained.labels[0]) if trained.labels else ""
    if trained.task == "classify":
        console.print(
            f"classify with: charlm classify {checkpoint} TEXT; measure it with: "
            f"charlm evaluate {checkpoint} FILES",
            markup=False,
        )
        kept = trained.checkpoint / GENERATIVE_NAME
        if (kept / CONFIG_NAME).is_file():
            console.print(
                "it classifies with the labelled language model it keeps, which also writes: "
                f"charlm generate {shlex.quote(str(kept))} --label {label}",
                markup=False,
            )
    elif trained.labels:
        console.print(
            f"sample from it with: charlm generate {checkpoint} --label {label}; "
            f"classify with: charlm classify {checkpoint} TEXT",
            markup=False,
        )
    else:
        console.print(f"sample from it with: charlm generate {checkpoint}", markup=False)
