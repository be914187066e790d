"""Click options derived from the config dataclasses (see charlm/options.py).

`config_options(TrainConfig)` adds one option per field, with the field's default, help and
limits; `config_values(TrainConfig, params)` collects the parsed values back by field name.
The few options that several commands share and no config holds (--device, --unknown,
--prior, --ensemble) are defined once here too.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from charlm.data import PRIORS
from charlm.device import DEVICE_CHOICES
from charlm.errors import ConfigError
from charlm.options import SAME, Option, flag_name, option_fields
from charlm.tokenizers import UNKNOWN_POLICIES

if TYPE_CHECKING:
    from charlm.sampling import Ensemble, Sampler


class NonEmptyPath(click.Path):
    """click.Path that refuses an empty path: "" names no file, and would write into (or
    read) the current directory."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, str) and not value:
            self.fail("is empty; give the path of a file or directory", param, ctx)
        return super().convert(value, param, ctx)


class Parsed(click.ParamType):
    """A value read from text by the config's own parser (a duration, a list of ids)."""

    def __init__(self, parse: Callable[[str], Any], metavar: str) -> None:
        self.parse, self.name = parse, metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except (ConfigError, ValueError) as exc:
            self.fail(str(exc), param, ctx)


class GroupedOption(click.Option):
    """An option that `--help` lists under the heading `group`."""

    def __init__(self, *args: Any, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


class GroupedCommand(click.Command):
    """A command whose `--help` lists its options under headings, in the order first met.

    Options without a group (such as --help) come last, under "Other options".
    """

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        others = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is None:
                continue
            group = getattr(param, "group", None)
            (groups.setdefault(group, []) if group else others).append(record)
        if others:
            groups["Other options"] = others
        for heading, records in groups.items():
            with formatter.section(heading):
                formatter.write_dl(records)


def grouped(group: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """`click.option(*args, **kwargs)` listed under `group` by a GroupedCommand."""
    return click.option(*args, cls=GroupedOption, group=group, **kwargs)


def config_options(
    config: type,
    *,
    group: str | None = None,
    exclude: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> Callable[[Any], Any]:
    """A decorator adding an option for each option field of `config` (in field order), or
    for the fields named in `only`, under the heading of the field's group, else `group`."""
    made = [
        _click_option(field, spec, group)
        for field, spec in option_fields(config)
        if field.name not in exclude and (only is None or field.name in only)
    ]

    def decorate(command: Any) -> Any:
        for make in reversed(made):
            command = make(command)
        return command

    return decorate


def config_values(config: type, params: dict[str, Any]) -> dict[str, Any]:
    """The values of `config`'s option fields among the parsed `params`, by field name."""
    values = {}
    for field, spec in option_fields(config):
        name = param_name(field, spec)
        if name in params:
            values[field.name] = not params[name] if spec.inverted else params[name]
    return values


def param_name(field: dataclasses.Field, spec: Option) -> str:
    """The keyword a command receives: the field's name, or the flag's for an inverted flag."""
    return flag_name(field, spec)[2:].replace("-", "_") if spec.inverted else field.name


def _click_option(field: dataclasses.Field, spec: Option, group: str | None) -> Callable:
    flag = flag_name(field, spec)
    settings: dict[str, Any] = {
        "help": spec.help,
        "show_default": True,
        "cls": GroupedOption,
        "group": spec.group or group,
    }
    if spec.inverted:
        return click.option(flag, param_name(field, spec), is_flag=True, default=False, **settings)
    if spec.negatable:
        flag = f"{flag}/--no-{flag[2:]}"
    elif _base_type(field) == "bool":
        settings["is_flag"] = True
    else:
        settings["type"] = _click_type(field, spec)
    if any(value != SAME for value in (spec.examples, spec.classify, spec.words)):
        # Click shows a string default as given: every default in its own brackets.
        shown = spec.shown_default if field.default is None else _shown(field.default)
        if spec.examples != SAME:
            shown += f"; {_shown(spec.examples)} with --examples"
        if spec.classify != SAME:
            shown += f"; {_shown(spec.classify)} with --task classify"
        if spec.words != SAME:
            shown += f"; {_shown(spec.words)} for a classifier of words"
        settings["show_default"] = shown
    elif field.default in (None, ()) and spec.shown_default is not None:
        # Click shows no default for None or (); say what it means, in Click's own format.
        settings["help"] = f"{spec.help}  [default: {spec.shown_default}]"
    if spec.multiple:
        settings["multiple"] = True
    if spec.metavar is not None and spec.parse is None:
        settings["metavar"] = spec.metavar
    return click.option(flag, field.name, default=field.default, **settings)


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _click_type(field: dataclasses.Field, spec: Option) -> click.ParamType:
    if spec.choices is not None:
        return click.Choice(list(spec.choices), case_sensitive=False)  # --model LSTM is lstm
    if spec.parse is not None:
        return Parsed(spec.parse, spec.metavar or "TEXT")
    if spec.path is not None:
        return NonEmptyPath(dir_okay=spec.path != "file", file_okay=spec.path != "dir")
    limits = {"min": spec.low, "max": spec.high}
    if _base_type(field) == "int":
        return click.IntRange(**limits) if limits != {"min": None, "max": None} else click.INT
    if _base_type(field) == "float":
        open_ends = {"min_open": spec.low_open, "max_open": spec.high_open}
        return click.FloatRange(**limits, **open_ends)
    return click.STRING


def _base_type(field: dataclasses.Field) -> str:
    """ "int" for `int` or `int | None` (annotations are strings under postponed evaluation)."""
    annotation = field.type if isinstance(field.type, str) else field.type.__name__
    return annotation.split("|")[0].strip()


def device_option(group: str | None = None) -> Callable[[Any], Any]:
    """--device, for every command that runs a model."""
    settings: dict[str, Any] = {
        "type": click.Choice(DEVICE_CHOICES, case_sensitive=False),
        "default": "auto",
        "show_default": True,
        "help": "auto uses a CUDA GPU when there is one.",
    }
    return grouped(group, "--device", **settings) if group else click.option("--device", **settings)


def threads_option(group: str | None = None) -> Callable[[Any], Any]:
    """--threads, for every command that runs a model on the CPU."""
    settings: dict[str, Any] = {
        "type": click.IntRange(min=1),
        "default": None,
        "help": "CPU threads for tensor maths (1 suits small models on a busy machine).  "
        "[default: PyTorch's choice]",
    }
    return (
        grouped(group, "--threads", **settings) if group else click.option("--threads", **settings)
    )


def unknown_option(what: str) -> Callable[[Any], Any]:
    """--unknown: what to do with pieces of `what` (the texts a command reads) outside the
    vocabulary."""
    return click.option(
        "--unknown",
        type=click.Choice(UNKNOWN_POLICIES, case_sensitive=False),
        default=None,
        help=f"Pieces of {what} the vocabulary lacks: fail naming them, skip them (not scored) "
        "or score them as <unk>.  [default: unk where the tokenizer has <unk>, else error]",
    )


def unk_problem(tokenizers: list[Any], unknown: str | None) -> str | None:
    """Why --unknown unk cannot work with these tokenizers (one without <unk>), or None."""
    lacking = next((t for t in tokenizers if unknown == "unk" and t.unk_id is None), None)
    if lacking is None:
        return None
    return (
        f"the model's {lacking.name} tokenizer has no <unk> token; use --unknown skip to drop "
        "unseen characters"
    )


def check_unknown(tokenizers: list[Any], unknown: str | None) -> None:
    """A usage error where --unknown unk meets a tokenizer without <unk>."""
    problem = unk_problem(tokenizers, unknown)
    if problem:
        raise click.UsageError(problem)


def prior_option(help_prefix: str = "") -> Callable[[Any], Any]:
    """--prior: p(label) when classifying by Bayes' rule."""
    return click.option(
        "--prior",
        type=click.Choice(PRIORS),
        default="learned",
        show_default=True,
        help=f"{help_prefix}p(label): learned (each label's share of the training examples) or "
        "uniform.",
    )


def ensemble_option() -> Callable[[Any], Any]:
    """--ensemble: more labelled checkpoints that classify together with the first."""
    return click.option(
        "--ensemble",
        "ensemble",
        multiple=True,
        type=NonEmptyPath(path_type=Path),
        help="Classify with this labelled checkpoint too: the mean of the models' log "
        "p(label | text). A classifier and a labelled LM of the same examples err differently "
        "(names: 84.7% together, 83.9% alone). Repeatable.  [default: none]",
    )


def read_text_input(path: Path, encoding: str | None) -> str:
    """The text of a file given on the command line, taken as written (Project Gutenberg
    lines kept); "-" reads standard input as a file is read: the encoding detected, binary
    refused."""
    from charlm.corpus import read_book
    from charlm.corpus.reading import book_from_bytes

    if str(path) == "-":
        raw = sys.stdin.buffer.read()
        return book_from_bytes(raw, Path("standard input"), encoding, keep_boilerplate=True).text
    return read_book(path, encoding=encoding, keep_boilerplate=True).text


def checked_encoding(encoding: str | None) -> str | None:
    """`encoding` (--encoding) as given; a name Python does not know is a usage error, as in
    `charlm train`."""
    from charlm.corpus.encodings import canonical_encoding

    if encoding is not None:
        try:
            canonical_encoding(encoding)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
    return encoding


def inference_device(device: str, quantize: str | None) -> str:
    """--device as --quantize leaves it (int8 runs on the CPU); a device it cannot run on is
    a usage error, as other options that cannot go together are."""
    from charlm.models.quantized import device_for  # imports torch: only where it is needed

    try:
        return device_for(device, quantize)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def with_ensemble(
    sampler: Sampler, checkpoints: tuple[Path, ...], device: str, quantize: str | None = None
) -> Sampler | Ensemble:
    """`sampler` alone, or with the --ensemble checkpoints an `Ensemble` led by it."""
    if not checkpoints:
        return sampler
    from charlm.sampling import Ensemble, load  # the commands that take --ensemble load it

    members = [load(path, device=device, quantize=quantize) for path in checkpoints]
    return Ensemble([sampler, *members])
