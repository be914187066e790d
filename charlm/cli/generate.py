"""`charlm generate`: stream text from a checkpoint to stdout, or open a prompt loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from charlm.cli import UNKNOWN_ADVICE, cli, resolve_checkpoint
from charlm.cli.interactive import model_check, run_prompt_loop
from charlm.cli.options import (
    NonEmptyPath,
    check_unknown,
    checked_encoding,
    config_options,
    device_option,
    inference_device,
    read_text_input,
    threads_option,
)
from charlm.cli.settings import Utf8Text, options_from_cli
from charlm.data import DataOptions
from charlm.device import set_threads
from charlm.errors import ConfigError, UnknownTokenError
from charlm.models import IMPLS
from charlm.models.quantized import InferenceOptions
from charlm.sampling import Sampler, SamplingOptions, load
from charlm.training.allocator import keep_freed_memory


@cli.command()
@click.argument("checkpoint", required=False, type=NonEmptyPath(path_type=Path))
@click.option(
    "--prefix",
    type=Utf8Text(),
    default="",
    show_default=True,
    help="Text to start from; the output begins with it.",
)
@click.option(
    "--prefix-file",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    default=None,
    help="Read the prefix from this text file instead (any length, taken as written); - "
    "reads stdin.",
)
@config_options(DataOptions, only=("encoding",))
@config_options(SamplingOptions)
@click.option(
    "--impl",
    type=click.Choice(list(IMPLS)),
    default=None,
    help="Run the recurrent layers with this implementation, e.g. torch to sample a "
    "--impl scratch model at full speed.  [default: the one that trained it]",
)
@device_option()
@threads_option()
@config_options(InferenceOptions)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_default=True,
    help="Print one JSON object per sample: prefix, text, tokens, log-probability, seed.",
)
@click.option(
    "--interactive",
    is_flag=True,
    show_default=True,
    help="Open a prompt: type a prefix, get a continuation; /help lists the commands.",
)
def generate(
    checkpoint: Path | None,
    prefix: str,
    prefix_file: Path | None,
    encoding: str | None,
    impl: str | None,
    device: str,
    threads: int | None,
    quantize: str | None,
    ngram: bool,
    as_json: bool,
    interactive: bool,
    **sampling: Any,
) -> None:
    """Continue a prefix with text from CHECKPOINT (default: the latest under ./checkpoints).

    One sample streams to stdout as it is written; with --num-samples or --beam-width the
    samples are printed numbered when done. Messages go to stderr, so
    `charlm generate > story.txt` captures only the text.

    A model of examples (trained with --examples or --labels) draws whole examples, each
    ending at its end token, one per line: `charlm generate names --label Russian
    --num-samples 10` prints ten Russian names.
    """
    options = options_from_cli(sampling)
    device = inference_device(device, quantize)
    set_threads(threads)
    if interactive and (prefix or prefix_file):
        raise click.UsageError("--interactive reads each prefix at its prompt; drop --prefix")
    if prefix_file is not None:
        if prefix:
            raise click.UsageError("give either --prefix or --prefix-file, not both")
        prefix = read_text_input(prefix_file, checked_encoding(encoding))
    sampler = load(
        resolve_checkpoint(checkpoint), device=device, impl=impl, quantize=quantize, ngram=ngram
    )
    # The process is the command's own: let glibc keep each step's freed pages, which it
    # otherwise returns and faults in again every token (half the speed on the main thread,
    # docs/benchmarks.md#serving-python--m-benchmarksserve).
    keep_freed_memory()
    try:  # at the prompt a missing label can still be set with /label
        if options.label is not None or not interactive:
            sampler.check_label(options.label, options.guidance)
        sampler.check_beam(options.beam_width)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    check_unknown([sampler.tokenizer], options.unknown)
    if interactive:
        run_prompt_loop(
            options,
            lambda text, now: write_samples(sampler, text, now, as_json),
            model_check(sampler),
        )
        return
    try:
        write_samples(sampler, prefix, options, as_json)
    except UnknownTokenError as exc:
        where = str(prefix_file) if prefix_file is not None else "the prefix"
        raise click.ClickException(exc.describe(where, UNKNOWN_ADVICE)) from exc


def write_samples(sampler: Sampler, prefix: str, options: SamplingOptions, as_json: bool) -> None:
    """Print the continuation(s) of `prefix` as the options ask: streamed, numbered or JSON."""
    if as_json:
        for number, sample in enumerate(sampler.samples(prefix, options=options), start=1):
            record = {
                "sample": number,
                "seed": sample.seed,
                "prefix": sample.prefix,
                "text": sample.text,
                "tokens": len(sample.token_ids),
                "log_probability": sample.log_probability,
                "stop": sample.stop,
            }
            click.echo(json.dumps(record, ensure_ascii=False))
    elif sampler.end_id is not None and options.num_samples > 1:
        for sample in sampler.samples(prefix, options=options):  # whole examples, one a line
            click.echo(prefix + sample.text)
    elif options.num_samples == 1 and options.beam_width == 1:
        _stream(sampler, prefix, options)
    else:
        for number, sample in enumerate(sampler.samples(prefix, options=options), start=1):
            about = f"seed {sample.seed}" if sample.seed is not None else "beam search"
            lp = sample.log_probability
            click.echo(f"── sample {number} ({about}, log-probability {lp:.2f}) ──")
            click.echo(prefix + sample.text)
            click.echo()


def _stream(sampler: Sampler, prefix: str, options: SamplingOptions) -> None:
    pieces = sampler.stream(prefix, options=options)
    first = next(pieces, "")  # a prefix the model cannot encode fails here, before any output
    click.echo(prefix + first, nl=False)
    for piece in pieces:
        click.echo(piece, nl=False)  # echo flushes, so each piece shows at once
    click.echo()
