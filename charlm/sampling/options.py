"""`SamplingOptions`: every setting of a sampling call, written once.

Each field carries its default, its help text, its bounds and what its empty value means (a
`Setting` in the field's metadata). From that one place come the checks (here), the options of
`charlm generate` and the commands of its prompt (charlm/cli/settings.py), and the keywords of
`Sampler.generate`, `stream` and `samples`. A new option is one field here.

The defaults are the same in Python and the CLI: 500 tokens at temperature 0.8, the values
`charlm generate` has always used (docs/sampling.md says why).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from charlm.errors import ConfigError
from charlm.tokenizers import UNKNOWN_POLICIES

MAX_SEED = 2**63 - 1
GREEDY_BELOW = 1e-30  # temperatures this small act as 0


@dataclass(frozen=True)
class Setting:
    """What the CLI, the prompt and the checks need to know about one option."""

    help: str  # the CLI help; `--name` in it reads as `/name` at the prompt
    kind: type  # int, float, str or bool
    low: float | None = None  # the smallest value allowed (or bound, with low_open)
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    choices: tuple[str, ...] = ()
    note: str = ""  # added to the error message, e.g. "(0 = greedy)"
    empty: str = ""  # what the default None or () means, shown as [default: ...]
    off: str = ""  # the word that restores the default at the prompt, e.g. "off"
    sampling_only: bool = False  # refused with beam search, which has no use for it
    multiple: bool = False  # a tuple of values (repeatable on the command line)
    cli: bool = True  # an option of `charlm generate` and a command of its prompt


def _option(default: Any, help: str, kind: type, **setting: Any) -> Any:
    return dataclasses.field(default=default, metadata={"setting": Setting(help, kind, **setting)})


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """How to draw text: every setting of `Sampler.generate`, `stream` and `samples`.

    Build it with keywords (`SamplingOptions(temperature=0.5, top_k=40)`), from a JSON object
    (`from_dict`), or from another one (`replace`); every value is checked on creation and a
    bad one raises `ConfigError` (a ValueError) that names it.

    length: the most new tokens per sample (a stop string may end one sooner).
    temperature: 0 always picks the most likely token (greedy); 1 samples the model as is;
        higher flattens the distribution.
    top_k: keep only the k most likely tokens (None: all).
    top_p: keep the smallest set of most likely tokens whose probability reaches top_p
        (nucleus sampling; 1.0: all).
    min_p: keep only the tokens whose probability is at least min_p times that of the most
        likely token (0.0: all); unlike a fixed top_k it keeps many tokens where the model is
        unsure and few where it is confident.
    repetition_penalty: make every token already in the prefix or the sample this many times
        less likely than before, relative to the tokens not yet used (the probabilities are
        then renormalised); 1.0 changes nothing, > 1 discourages repeats, < 1 favours them.
    stop: a string or strings that end a sample where they appear (cut off, not included).
    num_samples: continuations drawn together, as one batch.
    beam_width: > 1 runs beam search instead of sampling: the most probable continuations of
        exactly `length` tokens (the best `num_samples` of the beams, which must be at most
        `beam_width`). Beam search is deterministic and ignores temperature and seed.
    seed: sample i uses seed + i, so each sample can be reproduced on its own; None picks a
        random seed (reported in `Sample.seed`).
    unknown: what to do with prefix pieces outside the vocabulary: "error", "skip" or "unk"
        (None: the tokenizer's own rule: <unk> where it has one, else an error).
    allow_unk: let the sampler draw <unk>; other special tokens are never drawn.
    """

    length: int = _option(
        500,
        "Most tokens to generate after the prefix (a --stop string may end sooner).",
        int,
        low=0,
    )
    temperature: float = _option(
        0.8,
        "Randomness: 0 always picks the most likely token, 1 samples the model as is.",
        float,
        low=0,
        note="(0 = greedy)",
    )
    top_k: int | None = _option(
        None,
        "Draw only from the K most likely tokens.",
        int,
        low=1,
        note="(or None for no limit)",
        empty="no limit",
        off="off",
        sampling_only=True,
    )
    top_p: float = _option(
        1.0,
        "Draw only from the most likely tokens that together reach this probability "
        "(nucleus sampling); 1 keeps all.",
        float,
        low=0,
        high=1,
        low_open=True,
        sampling_only=True,
    )
    min_p: float = _option(
        0.0,
        "Draw only from tokens at least this fraction as likely as the most likely one; "
        "0 keeps all.",
        float,
        low=0,
        high=1,
        sampling_only=True,
    )
    repetition_penalty: float = _option(
        1.0,
        "Above 1, makes tokens already in the prefix or the sample less likely.",
        float,
        low=0,
        low_open=True,
        note="(1 = off)",
        sampling_only=True,
    )
    stop: tuple[str, ...] = _option(
        (),
        "End a sample where this text appears (it is not printed); repeatable; \\n is a newline.",
        str,
        empty="none",
        off="off",
        sampling_only=True,
        multiple=True,
    )
    num_samples: int = _option(
        1, "Draw this many samples at once (one batch) and print them numbered.", int, low=1
    )
    beam_width: int = _option(
        1,
        "Above 1, print the most probable continuation of exactly --length tokens "
        "found by beam search (ignores --temperature and --seed).",
        int,
        low=1,
    )
    seed: int | None = _option(
        None,
        "Seed for reproducible text; sample i uses SEED+i.",
        int,
        low=0,
        note="(or None for a random seed)",
        empty="random",
        off="random",
    )
    unknown: str | None = _option(
        None,
        "Prefix pieces the vocabulary lacks: fail, skip them or map them to <unk>.",
        str,
        choices=UNKNOWN_POLICIES,
        empty="unk where the tokenizer has <unk>, else error",
        off="default",
    )
    allow_unk: bool = _option(False, "Let the sampler draw <unk>.", bool, cli=False)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _checked(field, getattr(self, field.name))
            object.__setattr__(self, field.name, value)  # e.g. 1 -> 1.0, "x" -> ("x",)
        # Sample i uses seed + i, which must stay a valid seed too.
        highest = MAX_SEED - self.num_samples
        if self.seed is not None and self.seed > highest:
            raise ConfigError(f"seed must be in [0, {highest}], got {self.seed}")
        if self.beam_width > 1:
            self._check_beam()

    def _check_beam(self) -> None:
        if self.num_samples > self.beam_width:
            raise ConfigError(
                f"beam search returns at most beam_width={self.beam_width} continuations, "
                f"but num_samples={self.num_samples} were asked for"
            )
        used = [
            field.name
            for field in dataclasses.fields(self)
            if setting_of(field).sampling_only and getattr(self, field.name) != field.default
        ]
        if used:
            verb = "applies" if len(used) == 1 else "apply"
            raise ConfigError(f"{', '.join(used)} {verb} to sampling, not to beam search")

    @property
    def greedy(self) -> bool:
        """Temperature 0: always the most likely token, no random numbers drawn."""
        # Below GREEDY_BELOW, dividing float32 logits by the temperature would overflow or
        # divide by zero; the distribution is the argmax to float precision anyway.
        return self.temperature < GREEDY_BELOW

    def replace(self, **changes: Any) -> SamplingOptions:
        """A copy with `changes` made, checked like a new one; an unknown name is a ConfigError."""
        _check_names(changes)
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """Every setting, as JSON can hold it (stop strings as a list)."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingOptions:
        """Options from a JSON object; missing settings take their defaults.

        An unknown name or a value of the wrong type or range is a ConfigError that names it.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"sampling options must be an object, got {type(data).__name__}")
        _check_names(data)
        return cls(**data)


def setting_of(field: dataclasses.Field) -> Setting:
    return field.metadata["setting"]


def _check_names(names: Mapping[str, Any]) -> None:
    known = [field.name for field in dataclasses.fields(SamplingOptions)]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"unknown sampling option {name!r}; {hint}(the options: {', '.join(known)})"
            )


def _checked(field: dataclasses.Field, value: Any) -> Any:
    """`value` in its normal form (a float for a number, a tuple for a list), or ConfigError."""
    setting = setting_of(field)
    if value is None and field.default is None:
        return None
    if setting.multiple:
        values = (value,) if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"{field.name} must be a string or a list of strings, got {value!r}")
        return tuple(_checked_one(field.name, setting, one) for one in values)
    return _checked_one(field.name, setting, value)


def _checked_one(name: str, setting: Setting, value: Any) -> Any:
    kind = setting.kind
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is str:
        if setting.choices and value not in setting.choices:
            raise ConfigError(f"{name} must be one of {', '.join(setting.choices)}, got {value!r}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        return value
    types = (int, float) if kind is float else int  # an int is a fine float, not vice versa
    number = isinstance(value, types) and not isinstance(value, bool)
    if not number or not _in_range(value, setting):
        raise ConfigError(f"{name} must be {_expected(setting, number)}, got {value!r}")
    return float(value) if kind is float else value


def _in_range(value: float, setting: Setting) -> bool:
    if not math.isfinite(value):
        return False
    if setting.low is not None and (
        value <= setting.low if setting.low_open else value < setting.low
    ):
        return False
    return setting.high is None or value <= setting.high


def _expected(setting: Setting, number: bool) -> str:
    """E.g. "in (0, 1]", ">= 0 (0 = greedy)", "an integer >= 1"."""
    if setting.low is not None and setting.high is not None:
        bounds = f"in {'(' if setting.low_open else '['}{setting.low}, {setting.high}]"
    elif setting.low is not None:
        bounds = f"{'>' if setting.low_open else '>='} {setting.low}"
    else:
        bounds = "finite"
    if setting.kind is int:
        bounds = f"an integer {bounds}"
    elif not number:
        bounds = f"a number {bounds}"
    return f"{bounds} {setting.note}".rstrip()
