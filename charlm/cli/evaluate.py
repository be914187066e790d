"""`charlm evaluate`: how well a checkpoint predicts text files, or labelled examples."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from charlm.checkpoint import read_config
from charlm.cli import UNKNOWN_ADVICE, cli, resolve_checkpoint, stderr_console
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
    threads_option,
    unknown_option,
    with_ensemble,
)
from charlm.corpus import read_book
from charlm.data import DataOptions, read_example_set
from charlm.device import set_threads
from charlm.errors import CharlmError, ConfigError, UnknownTokenError
from charlm.imagefiles import check_image_path
from charlm.models.quantized import InferenceOptions
from charlm.sampling import (
    Ensemble,
    ExampleEvaluation,
    Sampler,
    Score,
    evaluate_examples,
    load,
    plot_confusion,
    plot_key,
)

COLUMNS = ("tokens", "characters", "cross-entropy", "perplexity", "bits/char")
EXAMPLE_FORMAT = ("labels", "examples", "text_column", "label_column", "encoding")
TABLE_COLUMNS = ("text_column", "label_column")


@cli.command()
@click.argument(
    "paths", nargs=-1, required=True, metavar="[CHECKPOINT] FILE...", type=NonEmptyPath()
)
@config_options(DataOptions, only=EXAMPLE_FORMAT)
@prior_option("Labelled examples: ")
@ensemble_option()
@click.option(
    "--plot",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    default=None,
    help="Labelled examples: draw the confusion matrix to this image (PNG).  [default: none]",
)
@unknown_option("a file")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_default=True,
    help="Print JSON: one object per file, or one for all the examples.",
)
@device_option()
@threads_option()
@config_options(InferenceOptions)
def evaluate(
    paths: tuple[str, ...],
    prior: str,
    ensemble: tuple[Path, ...],
    plot: Path | None,
    unknown: str | None,
    as_json: bool,
    device: str,
    threads: int | None,
    quantize: str | None,
    ngram: bool,
    **options: Any,
) -> None:
    """Score each FILE with CHECKPOINT: cross-entropy, perplexity and bits per character.

    CHECKPOINT defaults to the most recently trained one under ./checkpoints.
    Cross-entropy is in nats per token and perplexity is per token; bits per character divide
    the whole loss by the characters of the file, so models with different tokenizers can be
    compared on the same text. The model reads each file from start to end, its state carried
    throughout. A file that cannot be scored (characters the model never saw) is reported in
    its row and the others are still scored.

    With a model of examples, FILE... hold examples, read as --labels and --examples say (by
    default as the model's training data was read). A labelled model classifies labelled
    examples: accuracy, macro-F1, top-3 accuracy, precision and recall of each label and the
    nats per character given the label (each example's end counting as one character);
    --plot draws the confusion matrix; --ensemble classifies with more labelled models too.
    """
    device = inference_device(device, quantize)
    set_threads(threads)
    if plot is not None:
        try:
            check_image_path(plot, "--plot")  # before the evaluation, not after it
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
    values = config_values(DataOptions, options)
    kept = _typed_format(values)
    if values.get("labels") is None:  # columns without --labels: the model's table's, below
        values = {k: v for k, v in values.items() if k not in TABLE_COLUMNS}
    try:
        data = DataOptions(**values)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    checked_encoding(data.encoding)
    checkpoint, files = _split_arguments(paths)
    checkpoint = resolve_checkpoint(checkpoint)
    sampler = load(checkpoint, device=device, quantize=quantize, ngram=ngram)
    check_unknown([sampler.tokenizer], unknown)
    if plot is not None and not sampler.labels:
        raise click.UsageError(
            f"--plot draws the confusion matrix of a labelled model; {checkpoint} has no labels"
        )
    if sampler.end_id is not None:
        sampler = with_ensemble(sampler, ensemble, device, quantize)
        data = _training_format(checkpoint, data, kept)
        _evaluate_examples(sampler, files, data, prior, plot, unknown, as_json)
        return
    if ensemble:
        raise click.UsageError(
            f"{checkpoint} is a model of continuous text; --ensemble joins labelled models"
        )
    if data.example_unit is not None or set(kept) & set(TABLE_COLUMNS):
        raise click.UsageError(
            f"{checkpoint} is a model of continuous text; --labels / --examples and the "
            "columns of a table apply to models trained on examples"
        )
    _evaluate_books(sampler, files, data.encoding, unknown, as_json)


def _evaluate_books(
    sampler: Sampler, files: list[Path], encoding: str | None, unknown: str | None, as_json: bool
) -> None:
    # Every file must be readable before any work: a missing or empty one is a mistake in
    # the command, not a result.
    texts = [(path, read_book(path, encoding=encoding).text) for path in files]
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


def _evaluate_examples(
    sampler: Sampler | Ensemble,
    files: list[Path],
    data: DataOptions,
    prior: str,
    plot: Path | None,
    unknown: str | None,
    as_json: bool,
) -> None:
    if plot is not None and data.labels is None:
        raise click.UsageError(
            "--plot draws a confusion matrix of labelled examples: give --labels"
        )
    examples = read_example_set(files, data)
    try:
        evaluation = evaluate_examples(sampler, examples, prior=prior, unknown=unknown)
    except UnknownTokenError as exc:
        raise click.ClickException(exc.describe(exc.where, UNKNOWN_ADVICE)) from exc
    if as_json:
        click.echo(json.dumps(evaluation.to_dict(), ensure_ascii=False))
    else:
        _print_evaluation(evaluation, _classified_by(sampler))
    if plot is not None:
        written = plot_confusion(evaluation, plot)
        key = plot_key(evaluation.labels)
        if key is not None:
            written = f"{written} (the font lacks characters of the labels: numbered {key})"
        stderr_console().print(f"wrote {written}", markup=False, soft_wrap=True)


def _typed_format(values: dict[str, Any]) -> dict[str, Any]:
    """The settings of the files' format typed on the command line (not their defaults)."""
    context = click.get_current_context()
    return {
        key: values[key]
        for key in (*TABLE_COLUMNS, "encoding")
        if context.get_parameter_source(key) is ParameterSource.COMMANDLINE
    }


def _training_format(checkpoint: Path, data: DataOptions, typed: dict[str, Any]) -> DataOptions:
    """The example format the files are read in: the model's training data's where none is
    given, with the columns and encoding `typed` on the command line; a table given without
    its columns, in the columns the model's table had."""
    saved = read_config(checkpoint).get("data", {}).get("options", {})
    try:
        found = DataOptions.from_dict({k: saved[k] for k in EXAMPLE_FORMAT if k in saved})
    except (CharlmError, TypeError) as exc:
        raise click.UsageError(
            f"say how the files hold examples (--examples, --labels): {exc}"
        ) from exc
    if data.example_unit is not None:
        return _with_saved_columns(data, found, typed)
    if found.example_unit is None:
        found = DataOptions(examples="lines")
    try:  # what the command line says still holds: columns only for a table
        found = dataclasses.replace(found, **typed)
    except ConfigError as exc:
        raise click.UsageError(f"{exc}, and {checkpoint} was not trained on one") from exc
    stderr_console().print(
        f"reading the files as the model's training data was read: {_format_flags(found)}",
        soft_wrap=True,
    )
    return found


def _with_saved_columns(
    data: DataOptions, saved: DataOptions, typed: dict[str, Any]
) -> DataOptions:
    """`data`, a table whose columns were not `typed`, in the columns of the model's table."""
    if data.labels != "table" or saved.labels != "table":
        return data
    unnamed = {column: getattr(saved, column) for column in TABLE_COLUMNS if column not in typed}
    return dataclasses.replace(data, **unnamed)


def _format_flags(data: DataOptions) -> str:
    """The options that read files as `data` says, as they are typed."""
    flags = [f"--labels {data.labels}"] if data.labels else []
    if data.examples:  # a table's rows are its examples: no --examples
        flags.append(f"--examples {data.examples}")
    if data.labels == "table":
        defaults = DataOptions()
        for column, flag in (("text_column", "--text-column"), ("label_column", "--label-column")):
            if getattr(data, column) != getattr(defaults, column):
                flags.append(f"{flag} {getattr(data, column)}")
    return " ".join(flags)


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


def _classified_by(sampler: Sampler | Ensemble) -> str:
    """What a classifier's labels came from, for the summary line."""
    if isinstance(sampler, Ensemble):
        return f"{len(sampler.members)} models together"
    if sampler.generative is not None:
        return "classifier with its language model"
    return "classifier"


def _print_evaluation(evaluation: ExampleEvaluation, classified_by: str = "classifier") -> None:
    """The summary line and per-label table; `classified_by` names a classifier's models."""
    line = f"{evaluation.examples:,} examples"
    if evaluation.skipped:
        line += f" ({evaluation.skipped:,} left out: nothing in them the model knows)"
    language_model = evaluation.nats_per_char is not None  # a classifier gives no nats
    if language_model:
        line += f": {evaluation.nats_per_char:.4f} nats/char"
    if evaluation.accuracy is None:
        click.echo(line)
        return
    if language_model:
        line += " given the label"
    how = f"{evaluation.prior} prior"
    if not language_model:
        how = f"{classified_by}, {how}"
    click.echo(
        f"{line}; accuracy {evaluation.accuracy:.4f}, macro-F1 {evaluation.macro_f1:.4f}, "
        f"top-3 accuracy {evaluation.top3_accuracy:.4f} "
        f"({how}, {evaluation.ms_per_example:.2f} ms per example)"
    )
    width = max(len("label"), *(len(name) for name in evaluation.labels))
    click.echo(f"{'label':<{width}}  precision  recall      f1  support")
    absent = False
    for name, scores in evaluation.per_label.items():
        if not scores["support"] and not scores["predicted"]:
            continue  # a label neither in the examples nor ever chosen
        # A label chosen but not in the examples has no recall; macro-F1 leaves it out.
        absent = absent or not scores["support"]
        recall, f1 = (
            (f"{scores['recall']:>6.3f}", f"{scores['f1']:>6.3f}")
            if scores["support"]
            else (f"{'-':>6}", f"{'-':>6}")
        )
        click.echo(
            f"{name:<{width}}  {scores['precision']:>9.3f}  {recall}  {f1}  {scores['support']:>7,}"
        )
    if absent:
        click.echo("-: a label the model chose that no example has; macro-F1 leaves it out")
