"""`charlm train`: check the settings, run `charlm.train_book`, report the result.

Its options are declared, group by group, in train_options.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from charlm.api import DataOptions, train_book
from charlm.checkpoint import read_config
from charlm.cli import cli, stderr_console
from charlm.cli.train_options import (
    DATA_KEYS,
    MODEL_KEYS,
    RESUME_OVERRIDES,
    STOP_EXIT_CODES,
    TRAINING_KEYS,
    data_options,
    model_options,
    run_options,
    tokenizer_options,
    training_options,
)
from charlm.corpus.encodings import canonical_encoding
from charlm.errors import CharlmError, MissingTokenizerError, TokenizerError
from charlm.limits import MAX_VOCAB_SIZE
from charlm.models import ModelConfig
from charlm.progress import make_reporter
from charlm.tokenizers import get_tokenizer_class
from charlm.training import TrainConfig


@cli.command()
@click.argument("books", nargs=-1)
@data_options
@tokenizer_options
@model_options
@training_options
@run_options
@click.pass_context
def train(
    ctx: click.Context,
    books: tuple[str, ...],
    device: str,
    out: Path | None,
    no_cache: bool,
    resume: Path | None,
    init_from: Path | None,
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
    Several GPUs or machines: torchrun --nproc-per-node N -m charlm train BOOKS ...
    """
    if not books and resume is None:
        raise click.UsageError("missing BOOKS (or --resume CHECKPOINT to continue a run)")
    for other, given in (("--init-from", init_from), ("--out", out), ("--overwrite", overwrite)):
        if resume is not None and given:
            raise click.UsageError(
                f"--resume continues a run in its own directory with its own model; drop {other}"
            )
    data = DataOptions(
        use_cache=not no_cache,
        **{k: str(v) if isinstance(v, Path) else v for k, v in options.items() if k in DATA_KEYS},
    )
    model = {MODEL_KEYS[k]: v for k, v in options.items() if k in MODEL_KEYS}
    chosen = {k: v for k, v in options.items() if k in TRAINING_KEYS}
    if resume is not None:
        given = {k for k in chosen if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
        chosen = {
            **read_config(resume).get("training", {}),
            **{k: chosen[k] for k in given & RESUME_OVERRIDES},
        }
    try:  # every setting is checked now, before any book is read
        training = TrainConfig.from_dict(chosen)
        # The vocabulary is not known before the books are read: check the settings that do
        # not depend on it with the largest vocabulary allowed (its own checks come later).
        ModelConfig(vocab_size=MAX_VOCAB_SIZE, **model)
        data.splits()
        if data.encoding is not None:
            canonical_encoding(data.encoding)
        _check_tokenizer(options["tokenizer"], options["tokenizer_options"], resume)
    except CharlmError as exc:
        raise click.UsageError(str(exc)) from exc
    console = stderr_console()
    with make_reporter(console) as reporter:
        trained = train_book(
            list(books) or None,
            out=out,
            tokenizer=options["tokenizer"],
            tokenizer_options=options["tokenizer_options"],
            model=model,
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


def _check_tokenizer(name: str, options: dict[str, str], resume: Path | None) -> None:
    """Raise TokenizerError unless `name` is installed and takes `options`."""
    if resume is not None:
        return
    try:
        cls = get_tokenizer_class(name)
    except MissingTokenizerError:
        raise
    except TokenizerError:
        return  # installed but broken: not a usage error; the run reports it (exit 1)
    cls.check_options(options)


def _report(console, trained) -> None:
    result = trained.result
    if result.stopped_by in STOP_EXIT_CODES:
        console.print(
            f"{result.stopped_by} at step {result.steps}; saved [bold]{trained.checkpoint}[/]. "
            f"Continue with: charlm train --resume {trained.checkpoint}",
            soft_wrap=True,  # keep the command on one line, ready to copy
        )
        sys.exit(STOP_EXIT_CODES[result.stopped_by])
    val = "-" if result.val_perplexity is None else f"{result.val_perplexity:.3f}"
    rate = result.tokens_seen / max(result.train_seconds, 1e-9)
    console.print(
        f"saved [bold]{trained.checkpoint}[/] ({trained.num_parameters:,} parameters, "
        f"{result.steps} steps, {rate:,.0f} tokens/s): train perplexity "
        f"{result.train_perplexity:.3f}, validation perplexity {val}"
    )
    if trained.best is not None:
        console.print(
            f"best validation perplexity {result.best_val_perplexity:.3f} (step "
            f"{result.best_step}) is kept in {trained.best}"
        )
    console.print(f"sample from it with: charlm generate {trained.checkpoint}")
