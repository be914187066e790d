"""`charlm evaluate`: how well a checkpoint predicts text files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from charlm.cli import UNKNOWN_ADVICE, cli, resolve_checkpoint
from charlm.cli.options import config_options
from charlm.corpus import read_book
from charlm.device import DEVICE_CHOICES
from charlm.errors import CharlmError, UnknownTokenError
from charlm.models.quantized import InferenceOptions
from charlm.sampling import Score, load
from charlm.tokenizers import UNKNOWN_POLICIES

COLUMNS = ("tokens", "characters", "cross-entropy", "perplexity", "bits/char")


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="[CHECKPOINT] FILE...")
@click.option(
    "--unknown",
    type=click.Choice(UNKNOWN_POLICIES, case_sensitive=False),
    default=None,
    help="Pieces of a file the vocabulary lacks: fail naming them, skip them (not scored) "
    "or score them as <unk>.  [default: unk where the tokenizer has <unk>, else error]",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_default=True,
    help="Print one JSON object per file instead of a table.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto uses a CUDA GPU when there is one.",
)
@config_options(InferenceOptions)
def evaluate(
    paths: tuple[str, ...], unknown: str | None, as_json: bool, device: str, quantize: str | None
) -> None:
    """Score each FILE with CHECKPOINT: cross-entropy, perplexity and bits per character.

    CHECKPOINT defaults to the most recently trained one under ./checkpoints.
    Cross-entropy is in nats per token and perplexity is per token; bits per character divide
    the whole loss by the characters of the file, so models with different tokenizers can be
    compared on the same text. The model reads each file from start to end, its state carried
    throughout. A file that cannot be scored (characters the model never saw) is reported in
    its row and the others are still scored.
    """
    checkpoint, files = _split_arguments(paths)
    sampler = load(resolve_checkpoint(checkpoint), device=device, quantize=quantize)
    texts = [(path, read_book(path).text) for path in files]  # all readable before any work
    if len(texts) == 1:  # one file: its problem is the whole answer
        path, text = texts[0]
        rows = [(str(path), _score_one(sampler, path, text, unknown))]
        _print(rows, as_json)
        return
    rows = [(str(path), _score_or_problem(sampler, path, text, unknown)) for path, text in texts]
    _print(rows, as_json)
    problems = [problem for _, problem in rows if isinstance(problem, CharlmError)]
    if problems:
        unseen = next((p for p in problems if isinstance(p, UnknownTokenError)), None)
        advice = "; " + unseen.advice(UNKNOWN_ADVICE) if unseen and unseen.summary else ""
        raise click.ClickException(
            f"{len(problems)} of {len(rows)} files could not be scored (see their rows){advice}"
        )


def _split_arguments(paths: tuple[str, ...]) -> tuple[Path | None, list[Path]]:
    """(CHECKPOINT or None, FILEs). The first argument is the checkpoint when it is a
    directory, or a path that does not exist with FILEs after it (so that the error is
    about it); a first argument that is a file means "the latest checkpoint"."""
    first, *rest = (Path(p) for p in paths)
    if first.is_dir() or (rest and not first.exists()):
        if not rest:
            raise click.UsageError(f"missing FILE to score with {first}")
        return first, rest
    return None, [first, *rest]


def _score_one(sampler, path: Path, text: str, unknown: str | None) -> Score:
    try:
        return sampler.score(text, unknown=unknown)
    except UnknownTokenError as exc:
        raise click.ClickException(exc.describe(str(path), UNKNOWN_ADVICE)) from exc


def _score_or_problem(sampler, path: Path, text: str, unknown: str | None) -> Score | CharlmError:
    try:
        return sampler.score(text, unknown=unknown)
    except CharlmError as exc:
        return exc


def _print(rows: list[tuple[str, Score | CharlmError]], as_json: bool) -> None:
    if as_json:
        for name, score in rows:
            record = score.to_dict() if isinstance(score, Score) else {"error": _problem(score)}
            click.echo(json.dumps({"file": name, **record}, ensure_ascii=False))
        return
    name_width = max(len("file"), *(len(name) for name, _ in rows))
    click.echo(f"{'file':<{name_width}}  " + "  ".join(f"{c:>13}" for c in COLUMNS))
    for name, s in rows:
        if not isinstance(s, Score):
            click.echo(f"{name:<{name_width}}  not scored: {_problem(s)}")
            continue
        cells = (
            f"{s.num_tokens:>13,}",
            f"{s.num_characters:>13,}",
            f"{s.cross_entropy:>13.4f}",
            f"{s.perplexity:>13.3f}",
            f"{s.bits_per_character:>13.4f}",
        )
        click.echo(f"{name:<{name_width}}  " + "  ".join(cells))


def _problem(error: CharlmError) -> str:
    """What went wrong with one file, without the advice the final line gives once."""
    if isinstance(error, UnknownTokenError) and error.summary:
        return error.summary
    return str(error)
