"""`charlm evaluate`: how well a checkpoint predicts text files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from charlm.cli import cli
from charlm.cli.options import quantize_option
from charlm.corpus import read_book
from charlm.device import DEVICE_CHOICES
from charlm.sampling import load

COLUMNS = ("tokens", "characters", "cross-entropy", "perplexity", "bits/char")


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument(
    "files", nargs=-1, required=True, metavar="FILE...", type=click.Path(path_type=Path)
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_default=True,
    help="Print one JSON object per file instead of a table.",
)
@quantize_option
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto uses a CUDA GPU when there is one.",
)
def evaluate(
    checkpoint: Path, files: tuple[Path, ...], as_json: bool, quantize: str | None, device: str
) -> None:
    """Score each FILE with CHECKPOINT: cross-entropy, perplexity and bits per character.

    Cross-entropy is in nats per token and perplexity is per token; bits per character divide
    the whole loss by the characters of the file, so models with different tokenizers can be
    compared on the same text. The model reads each file from start to end, its state carried
    throughout.
    """
    sampler = load(checkpoint, device=device, quantize=quantize)
    texts = [(path, read_book(path).text) for path in files]  # all readable before any work
    rows = []
    for path, text in texts:
        score = sampler.score(text)
        if as_json:
            click.echo(json.dumps({"file": str(path), **score.to_dict()}))
        else:
            rows.append((str(path), score))
    if rows:
        _print_table(rows)


def _print_table(rows: list) -> None:
    name_width = max(len("file"), *(len(name) for name, _ in rows))
    click.echo(f"{'file':<{name_width}}  " + "  ".join(f"{c:>13}" for c in COLUMNS))
    for name, s in rows:
        cells = (
            f"{s.num_tokens:>13,}",
            f"{s.num_characters:>13,}",
            f"{s.cross_entropy:>13.4f}",
            f"{s.perplexity:>13.3f}",
            f"{s.bits_per_character:>13.4f}",
        )
        click.echo(f"{name:<{name_width}}  " + "  ".join(cells))
