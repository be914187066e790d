"""`charlm classify`: the labels of texts by Bayes' rule, or the book a passage comes from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from charlm.cli import UNKNOWN_ADVICE, cli
from charlm.cli.options import (
    NonEmptyPath,
    check_unknown,
    checked_encoding,
    config_options,
    config_values,
    device_option,
    ensemble_option,
    inference_device,
    prior_option,
    read_text_input,
    threads_option,
    unknown_option,
    with_ensemble,
)
from charlm.cli.settings import Utf8Text
from charlm.data import DataOptions
from charlm.device import set_threads
from charlm.errors import UnknownTokenError
from charlm.models.quantized import InferenceOptions
from charlm.sampling import Classification, Ensemble, Sampler, by_bits_per_character, load


@cli.command()
@click.argument("arguments", nargs=-1, metavar="CHECKPOINT [TEXT]...", type=Utf8Text())
@click.option(
    "--file",
    "files",
    multiple=True,
    type=NonEmptyPath(dir_okay=False, path_type=Path, allow_dash=True),
    help="Classify the texts of this file, one a line (with --models the whole file is one "
    "passage); - reads stdin; repeatable.  [default: none]",
)
@click.option(
    "--models",
    is_flag=True,
    show_default=True,
    help="The arguments are checkpoints of whole-book models, one a book: each --file "
    "passage goes to the model that predicts it best (bits per character).",
)
@click.option(
    "--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Labels shown."
)
@prior_option()
@ensemble_option()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_default=True,
    help='One JSON object per text: {"text": ..., "labels": [{"label": ..., "score": '
    "probability}, ...]}.",
)
@unknown_option("the texts")
@config_options(DataOptions, only=("encoding",))
@device_option()
@threads_option()
@config_options(InferenceOptions)
def classify(
    arguments: tuple[str, ...],
    files: tuple[Path, ...],
    models: bool,
    top_k: int,
    prior: str,
    ensemble: tuple[Path, ...],
    as_json: bool,
    unknown: str | None,
    device: str,
    threads: int | None,
    quantize: str | None,
    ngram: bool,
    **options: Any,
) -> None:
    """Label each TEXT by Bayes' rule under a labelled CHECKPOINT, or find a passage's book.

    The labels of each TEXT under CHECKPOINT, a model trained on labelled examples, are listed
    best first: p(label | text) ∝ p(text | label) · p(label).

    \b
        charlm classify checkpoints/names Hinton Dostoevsky --top-k 3

    prints, as the PyTorch names tutorial does, each label's log-probability:

    \b
        > Hinton
        (-0.47) Scottish
        ...

    With --models the arguments are checkpoints of models of whole books instead, and each
    --file passage is given to the book whose model predicts it best:

    \b
        charlm classify --models checkpoints/alice checkpoints/moby-dick --file passage.txt

    --ensemble adds labelled models (a classifier and a labelled LM of the same examples):
    the labels are then ranked by the mean of the models' log-probabilities.

    --quantize and --no-ngram load every model as `charlm generate` does.
    """
    device = inference_device(device, quantize)
    set_threads(threads)
    loading = {"device": device, "quantize": quantize, "ngram": ngram}
    encoding = checked_encoding(DataOptions(**config_values(DataOptions, options)).encoding)
    if models:
        if ensemble:
            raise click.UsageError("--ensemble joins labelled models; --models compares books")
        _classify_passages(arguments, files, encoding, top_k, as_json, unknown, loading)
        return
    if not arguments:
        raise click.UsageError("missing CHECKPOINT (or --models CHECKPOINT...)")
    checkpoint, texts = Path(arguments[0]), list(arguments[1:])
    texts += [line for path in files for line in _lines(path, encoding)]
    if not texts:
        raise click.UsageError("no text to classify: give TEXT arguments or --file")
    if any(not text.strip() for text in arguments[1:]):
        raise click.UsageError("a TEXT argument is empty: give each text to classify")
    sampler = with_ensemble(load(checkpoint, **loading), ensemble, device, quantize)
    members = sampler.members if isinstance(sampler, Ensemble) else [sampler]
    check_unknown([member.tokenizer for member in members], unknown)
    try:
        results = sampler.classify(texts, top_k=top_k, prior=prior, unknown=unknown)
    except UnknownTokenError as exc:
        raise click.ClickException(exc.describe(exc.where, UNKNOWN_ADVICE)) from exc
    _print(results, as_json)


def _classify_passages(
    checkpoints: tuple[str, ...],
    files: tuple[Path, ...],
    encoding: str | None,
    top_k: int,
    as_json: bool,
    unknown: str | None,
    loading: dict[str, Any],
) -> None:
    if len(checkpoints) < 2:
        raise click.UsageError("--models compares two checkpoints or more; name them")
    if not files:
        raise click.UsageError("--models classifies passages: give them with --file")
    passages = [read_text_input(path, encoding) for path in files]
    samplers = [load(path, **loading) for path in checkpoints]
    check_unknown([sampler.tokenizer for sampler in samplers], unknown)
    names = _model_names([Path(path) for path in checkpoints])
    bits = np.array(
        [[_bits(sampler, model, text, source, unknown)
          for sampler, model in zip(samplers, checkpoints)]
         for text, source in zip(passages, files)]
    )  # fmt: skip
    results = by_bits_per_character(passages, bits, names, top_k)
    _print(results, as_json, [str(path) for path in files])


def _bits(sampler: Sampler, checkpoint: str, text: str, source: Path, unknown: str | None) -> float:
    try:
        return sampler.score(text, unknown=unknown).bits_per_character
    except UnknownTokenError as exc:
        # Skipping what one model cannot read would flatter it: say how to compare fairly.
        unseen = f"{source} has {exc.summary}" if exc.summary else str(exc)
        raise click.ClickException(
            f"{checkpoint} cannot read all of it: {unseen}; to compare books, train each model "
            "with --tokenizer-option unk=true (an unseen character then costs what the model "
            "learned for <unk>)"
        ) from exc


def _model_names(paths: list[Path]) -> list[str]:
    """Each checkpoint's directory name, or its whole path where two names coincide."""
    names = [path.name for path in paths]
    return names if len(set(names)) == len(names) else [str(path) for path in paths]


def _lines(path: Path, encoding: str | None) -> list[str]:
    return [line.strip() for line in read_text_input(path, encoding).split("\n") if line.strip()]


def _print(results: list[Classification], as_json: bool, sources: list[str] | None = None) -> None:
    for index, result in enumerate(results):
        if as_json:
            record = result.to_dict()
            if sources is not None:
                record["file"] = sources[index]
            click.echo(json.dumps(record, ensure_ascii=False))
            continue
        click.echo(f"> {sources[index] if sources is not None else _one_line(result.text)}")
        for score in result.labels:
            bits = score.bits_per_character
            detail = f"  {bits:.4f} bits/char" if bits is not None else ""
            # A log-probability is never above 0: one that rounds to 0 is "-0.00" every time.
            click.echo(f"({-abs(score.log_probability):.2f}) {score.label}{detail}")


def _one_line(text: str) -> str:
    """`text` on one line: a line break (or another control character) shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
