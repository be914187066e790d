"""Options defined once: a config dataclass field carries its command-line name, help and limits.

    hidden_size: int = option(512, "Hidden units per layer.", flag="--hidden", low=1)

A field may also name its default for runs on short examples (`examples=256`): a name or a
sentence wants a smaller network and other batches than a book does; and its default for a
classifier of them (`classify=0.5`, with `--task classify`), which sees one label per example
instead of every character, and so wants more regularisation; and its default for a classifier
that reads words (`words=128`: sentences, whose vocabulary is hundreds of times a name's
alphabet, and whose meaning a phrase anywhere in them may carry).

The dataclass is the single place where an option's name, default and help are written; the
command line (charlm/cli/options.py) derives its Click options from these fields, and a test
walks every config to check that each field has its option and the defaults agree. Nothing here
depends on Click: the library stays usable without the CLI.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from charlm.errors import ConfigError

# The `examples` default of a field that keeps its one default for every kind of data.
SAME = "same"


@dataclass(frozen=True)
class Option:
    """How one config field appears on the command line."""

    help: str
    flag: str | None = None  # e.g. "--hidden"; default: the field name with dashes
    low: float | None = None  # numeric limits, inclusive unless *_open
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None  # text → value (durations, lists); raises ConfigError
    metavar: str | None = None
    shown_default: str | None = None  # what --help says for a default of None ("none", ...)
    negatable: bool = False  # a boolean with both --flag and --no-flag
    inverted: bool = False  # a boolean given as its negation (--no-cache sets use_cache False)
    path: str | None = None  # "file", "dir" or "any": the value is a path to one
    group: str | None = None  # the heading --help lists it under; default: its config's
    multiple: bool = False  # a tuple of values, the option repeatable
    examples: Any = SAME  # the default for runs on short examples (`--examples`), if different
    classify: Any = SAME  # the default for classifiers of them (`--task classify`), if different
    words: Any = SAME  # the default for a classifier that reads words (sentences), if different


def option(default: Any, help: str, **details: Any) -> Any:
    """A dataclass field with a default and its command-line description."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **details)})


def option_fields(config: type) -> list[tuple[dataclasses.Field, Option]]:
    """The fields of a config dataclass that are command-line options, in declaration order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(config) if "option" in f.metadata]


def check_types(config: Any) -> None:
    """Refuse, as a ConfigError naming the field, a value of the wrong kind for its option
    field: a config built in Python (`TrainConfig(lr="x")`) would otherwise fail later, with
    a TypeError from the first comparison. Fields typed other than int, float, str or bool
    (optionally None) are left to the config's own checks."""
    hints = typing.get_type_hints(type(config))  # ~0.2 ms: configs are made a few times a run
    for field, _ in option_fields(type(config)):
        kinds = set(typing.get_args(hints[field.name])) or {hints[field.name]}
        value = getattr(config, field.name)
        if value is None and type(None) in kinds:
            continue
        simple = kinds - {type(None)}
        if not simple <= {int, float, str, bool}:
            continue
        wanted = tuple(simple | ({int} if float in simple else set()))  # 3 is a fine float
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in simple):
            words = [_KIND_WORDS[kind] for kind in (bool, int, float, str) if kind in simple]
            words += ["None"] if type(None) in kinds else []
            raise ConfigError(f"{field.name} must be {' or '.join(words)}, got {value!r}")


_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def flag_name(field: dataclasses.Field, spec: Option) -> str:
    return spec.flag or "--" + field.name.replace("_", "-")


def example_defaults(config: type, task: str = "lm", words: bool = False) -> dict[str, Any]:
    """The fields of `config` whose default differs for short examples, with that default;
    with `task` "classify", those whose default differs for a classifier of them too, and
    with `words` as well, for a classifier that reads words."""
    found = {f.name: spec.examples for f, spec in option_fields(config) if spec.examples != SAME}
    if task == "classify":
        found |= {f.name: s.classify for f, s in option_fields(config) if s.classify != SAME}
        if words:
            found |= {f.name: s.words for f, s in option_fields(config) if s.words != SAME}
    return found
