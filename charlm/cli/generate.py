"""`charlm generate`: stream text from a checkpoint to stdout, or open a prompt loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from charlm.checkpoint import latest_checkpoint
from charlm.cli import cli, stderr_console
from charlm.cli.interactive import run_prompt_loop
from charlm.cli.options import quantize_option
from charlm.cli.settings import EscapedText, Utf8Text, check_settings
from charlm.corpus import read_book
from charlm.device import DEVICE_CHOICES
from charlm.errors import ConfigError
from charlm.models import IMPLS
from charlm.sampling import Sampler, load
from charlm.tokenizers import UNKNOWN_POLICIES
from charlm.training.run import DEFAULT_CHECKPOINT_ROOT


def resolve_checkpoint(checkpoint: Path | None) -> Path:
    """The given checkpoint, or the newest under ./checkpoints (saying which on stderr)."""
    if checkpoint is not None:
        return checkpoint
    latest = latest_checkpoint(DEFAULT_CHECKPOINT_ROOT)
    if latest is None:
        raise click.ClickException(
            f"no CHECKPOINT given and none found under ./{DEFAULT_CHECKPOINT_ROOT}; "
            "train one with: charlm train BOOK"
        )
    stderr_console().print(f"using {latest} (the most recently trained checkpoint)")
    return latest


@cli.command()
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option(
    "--prefix",
    type=Utf8Text(),
    default="",
    show_default=True,
    help="Text to start from; the output begins with it.",
)
@click.option(
    "--prefix-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the prefix from this text file instead (any length).",
)
@click.option(
    "--length",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Most tokens to generate after the prefix (a --stop string may end sooner).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.8,
    show_default=True,
    help="Randomness: 0 always picks the most likely token, 1 samples the model as is.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Draw only from the K most likely tokens.  [default: no limit]",
)
@click.option(
    "--top-p",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Draw only from the most likely tokens that together reach this probability "
    "(nucleus sampling); 1 keeps all.",
)
@click.option(
    "--repetition-penalty",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Above 1, makes tokens already in the prefix or the sample less likely.",
)
@click.option(
    "--stop",
    "stops",
    type=EscapedText(),
    multiple=True,
    help="End a sample where this text appears (it is not printed); repeatable; "
    "\\n is a newline.  [default: none]",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Draw this many samples at once (one batch) and print them numbered.",
)
@click.option(
    "--beam-width",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Above 1, print the most probable continuation of exactly --length tokens "
    "found by beam search (ignores --temperature and --seed).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed for reproducible text; sample i uses SEED+i.  [default: random]",
)
@click.option(
    "--unknown",
    type=click.Choice(UNKNOWN_POLICIES),
    default=None,
    help="Prefix pieces the vocabulary lacks: fail, skip them or map them to <unk>.  "
    "[default: unk where the tokenizer has <unk>, else error]",
)
@click.option(
    "--impl",
    type=click.Choice(list(IMPLS)),
    default=None,
    help="Run the recurrent layers with this implementation, e.g. torch to sample a "
    "--impl scratch model at full speed.  [default: the one that trained it]",
)
@quantize_option
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto uses a CUDA GPU when there is one.",
)
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
    length: int,
    temperature: float,
    top_k: int | None,
    top_p: float,
    repetition_penalty: float,
    stops: tuple[str, ...],
    num_samples: int,
    beam_width: int,
    seed: int | None,
    unknown: str | None,
    impl: str | None,
    quantize: str | None,
    device: str,
    as_json: bool,
    interactive: bool,
) -> None:
    """Continue a prefix with text from CHECKPOINT (default: the latest under ./checkpoints).

    One sample streams to stdout as it is written; with --num-samples or --beam-width the
    samples are printed numbered when done. Messages go to stderr, so
    `charlm generate > story.txt` captures only the text.
    """
    settings = dict(
        length=length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        stop=stops,
        num_samples=num_samples,
        beam_width=beam_width,
        seed=seed,
        unknown=unknown,
    )
    try:
        check_settings(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if interactive and (prefix or prefix_file):
        raise click.UsageError("--interactive reads each prefix at its prompt; drop --prefix")
    if prefix_file is not None:
        if prefix:
            raise click.UsageError("give either --prefix or --prefix-file, not both")
        prefix = read_book(prefix_file).text
    sampler = load(resolve_checkpoint(checkpoint), device=device, impl=impl, quantize=quantize)
    if interactive:
        run_prompt_loop(settings, lambda text: write_samples(sampler, text, settings, as_json))
    else:
        write_samples(sampler, prefix, settings, as_json)


def write_samples(sampler: Sampler, prefix: str, settings: dict[str, Any], as_json: bool) -> None:
    """Print the continuation(s) of `prefix` as the settings ask: streamed, numbered or JSON."""
    if as_json:
        for number, sample in enumerate(sampler.samples(prefix, **settings), start=1):
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
    elif settings["num_samples"] == 1 and settings["beam_width"] == 1:
        _stream(sampler, prefix, settings)
    else:
        for number, sample in enumerate(sampler.samples(prefix, **settings), start=1):
            about = f"seed {sample.seed}" if sample.seed is not None else "beam search"
            lp = sample.log_probability
            click.echo(f"── sample {number} ({about}, log-probability {lp:.2f}) ──")
            click.echo(prefix + sample.text)
            click.echo()


def _stream(sampler: Sampler, prefix: str, settings: dict[str, Any]) -> None:
    options = {k: v for k, v in settings.items() if k != "num_samples"}
    pieces = sampler.stream(prefix, **options)
    first = next(pieces, "")  # a prefix the model cannot encode fails here, before any output
    click.echo(prefix + first, nl=False)
    for piece in pieces:
        click.echo(piece, nl=False)  # echo flushes, so each piece shows at once
    click.echo()
