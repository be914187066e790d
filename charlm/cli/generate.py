"""`charlm generate`: stream text from a checkpoint to stdout."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from charlm.api import DEFAULT_CHECKPOINT_ROOT
from charlm.checkpoint import latest_checkpoint
from charlm.cli import cli, stderr_console
from charlm.device import DEVICE_CHOICES
from charlm.sampling import load
from charlm.tokenizers import UNKNOWN_POLICIES


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
    "--prefix", default="", show_default=True, help="Text to start from; the output begins with it."
)
@click.option(
    "--length",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Number of tokens to generate after the prefix.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.8,
    show_default=True,
    help="Randomness: 0 always picks the most likely token, 1 samples the model as is.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for reproducible text.  [default: random]"
)
@click.option(
    "--unknown",
    type=click.Choice(UNKNOWN_POLICIES),
    default=None,
    help="Prefix pieces the vocabulary lacks: fail, skip them or map them to <unk>.  "
    "[default: unk where the tokenizer has <unk>, else error]",
)
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto uses a CUDA GPU when there is one.",
)
def generate(
    checkpoint: Path | None,
    prefix: str,
    length: int,
    temperature: float,
    seed: int | None,
    unknown: str | None,
    device: str,
) -> None:
    """Continue a prefix with text from CHECKPOINT (default: the latest under ./checkpoints)."""
    sampler = load(resolve_checkpoint(checkpoint), device=device)
    pieces = sampler.stream(
        prefix=prefix, length=length, temperature=temperature, seed=seed, unknown=unknown
    )
    first = next(pieces, "")  # a prefix the model cannot encode fails here, before any output
    click.echo(prefix + first, nl=False)
    for piece in pieces:
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()
