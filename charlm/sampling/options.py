"""`SamplingOptions`: every setting of a sampling call, written once.

Each field carries its default, its help text and its bounds (an `Option`, as every config
dataclass of charlm has: charlm/options.py), and how it is checked and typed at the prompt (a
`Rule`). From that one place come the checks (here), the options of `charlm generate`
(charlm/cli/options.py), the commands of its prompt (charlm/cli/interactive.py) and the
keywords of `Sampler.generate`, `stream` and `samples`. A new option is one field here.

The defaults are the same in Python and the CLI: 500 tokens at temperature 0.8, the values
`charlm generate` has always used (docs/sampling.md says why).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from charlm.errors import ConfigError
from charlm.options import Option
from charlm.sampling.stops import parse_stop
from charlm.tokenizers import UNKNOWN_POLICIES

MAX_SEED = 2**63 - 1
# Samples drawn at once: each is a row of every step's scores (10,000 rows of a 10,000-word
# vocabulary are 400 MB), and a mistyped count must be an error, not an exhausted machine.
MAX_SAMPLES = 10_000
GREEDY_BELOW = 1e-30  # temperatures this small act as 0


@dataclass(frozen=True)
class Rule:
    """What the checks and the prompt need to know about an option, beyond its `Option`."""

    note: str = ""  # added to the error message, e.g. "(0 = greedy)"
    off: str = ""  # the word that restores the default at the prompt, e.g. "off"
    sampling_only: bool = False  # refused with beam search, which has no use for it


def _option(
    default: Any,
    help: str,
    *,
    note: str = "",
    off: str = "",
    sampling_only: bool = False,
    **cli: Any,
) -> Any:
    """A field with its command-line description (`Option`) and its `Rule`."""
    metadata = {"option": Option(help, **cli), "sampling": Rule(note, off, sampling_only)}
    return dataclasses.field(default=default, metadata=metadata)


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
    label: the label of the text to draw, for a model trained on labelled examples (see
        `Sampler.labels`); None for any other model. With a model of examples every sample is
        one example, ended by the model's end token.
    guidance: with a label, draw from log p(token | label) + guidance · (log p(token | label)
        − log p(token)), where p(token) is the model's own mixture of its labels weighed by
        their posterior given the text so far (classifier-free guidance; guidance.py): 0 is
        the model as is, 1–3 writes text that reads more clearly as the label. Costs one
        network row per label for every sample.
    """

    length: int = _option(
        500,
        "Most tokens to generate after the prefix (a --stop string may end sooner).",
        low=0,
    )
    temperature: float = _option(
        0.8,
        "Randomness: 0 always picks the most likely token, 1 samples the model as is.",
        low=0,
        note="(0 = greedy)",
    )
    top_k: int | None = _option(
        None,
        "Draw only from the K most likely tokens.",
        low=1,
        note="(or None for no limit)",
        shown_default="no limit",
        off="off",
        sampling_only=True,
    )
    top_p: float = _option(
        1.0,
        "Draw only from the most likely tokens that together reach this probability "
        "(nucleus sampling); 1 keeps all.",
        low=0,
        high=1,
        low_open=True,
        sampling_only=True,
    )
    min_p: float = _option(
        0.0,
        "Draw only from tokens at least this fraction as likely as the most likely one; "
        "0 keeps all.",
        low=0,
        high=1,
        sampling_only=True,
    )
    repetition_penalty: float = _option(
        1.0,
        "Above 1, makes tokens already in the prefix or the sample less likely.",
        low=0,
        low_open=True,
        note="(1 = off)",
        sampling_only=True,
    )
    stop: tuple[str, ...] = _option(
        (),
        "End a sample where this text appears (it is not printed); repeatable; \\n is a newline.",
        parse=parse_stop,
        metavar="TEXT",
        shown_default="none",
        multiple=True,
        off="off",
        sampling_only=True,
    )
    num_samples: int = _option(
        1,
        "Draw this many samples at once (one batch) and print them numbered.",
        low=1,
        high=MAX_SAMPLES,
    )
    beam_width: int = _option(
        1,
        "Above 1, print the most probable continuation of exactly --length tokens "
        "found by beam search (ignores --temperature and --seed).",
        low=1,
    )
    seed: int | None = _option(
        None,
        "Seed for reproducible text; sample i uses SEED+i.",
        low=0,
        note="(or None for a random seed)",
        shown_default="random",
        off="random",
    )
    unknown: str | None = _option(
        None,
        "Prefix pieces the vocabulary lacks: fail, skip them or map them to <unk>.",
        choices=UNKNOWN_POLICIES,
        shown_default="unk where the tokenizer has <unk>, else error",
        off="default",
    )
    label: str | None = _option(
        None,
        "Draw text of this label, from a model trained on labelled examples (--labels); an "
        "unknown one lists them.",
        shown_default="none",
        off="none",
    )
    guidance: float = _option(
        0.0,
        "Steer each sample toward its --label: above 0, favour the tokens that make the "
        "text read more like that label than like the others; 0 draws from the model as is.",
        low=0,
        note="(0 = off)",
        sampling_only=True,
    )
    # No option of `charlm generate`: drawing <unk> is for code that handles it.
    allow_unk: bool = dataclasses.field(default=False, metadata={"sampling": Rule()})

    def __post_init__(self) -> None:
        for field in _FIELDS:
            value = getattr(self, field.name)
            if value is not field.default:  # a default is valid as it is (and cheap to keep)
                object.__setattr__(self, field.name, _checked(field, value))  # 1 -> 1.0, ...
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
            if rule_of(field).sampling_only and getattr(self, field.name) != field.default
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


def rule_of(field: dataclasses.Field) -> Rule:
    return field.metadata["sampling"]


def _kind(hint: Any) -> type:
    """The type of one value: int for `int | None`, str for `tuple[str, ...]`."""
    args = [arg for arg in typing.get_args(hint) if arg not in (type(None), Ellipsis)]
    return args[0] if args else hint


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
    spec = field.metadata.get("option") or Option("")
    if value is None and field.default is None:
        return None
    if spec.multiple:
        # None is none of them, as JSON's null is (an API's "stop": null).
        values = (value,) if isinstance(value, str) else () if value is None else value
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"{field.name} must be a string or a list of strings, got {value!r}")
        return tuple(_checked_one(field, spec, one) for one in values)
    return _checked_one(field, spec, value)


def _checked_one(field: dataclasses.Field, spec: Option, value: Any) -> Any:
    name, kind = field.name, KINDS[field.name]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is str:
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        return value
    # An int is a fine float, not vice versa; NumPy's numbers are numbers too.
    types = numbers.Real if kind is float else numbers.Integral
    number = isinstance(value, types) and not isinstance(value, bool)
    if not number or not _in_range(value, spec):
        expected = _expected(spec, kind, number, rule_of(field).note)
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}… (very large)"
        raise ConfigError(f"{name} must be {expected}, got {shown}")
    return float(value) if kind is float else int(value)


def _in_range(value: float, spec: Option) -> bool:
    # An int past a float's range (10**400) is out of every range, not an OverflowError.
    if isinstance(value, numbers.Integral) and abs(value) > sys.float_info.max:
        return False
    if not math.isfinite(value):
        return False
    if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
        return False
    return spec.high is None or (value < spec.high if spec.high_open else value <= spec.high)


def _expected(spec: Option, kind: type, number: bool, note: str) -> str:
    """E.g. "in (0, 1]", ">= 0 (0 = greedy)", "an integer >= 1"."""
    if spec.low is not None and spec.high is not None:
        left, right = "(" if spec.low_open else "[", ")" if spec.high_open else "]"
        bounds = f"in {left}{spec.low}, {spec.high}{right}"
    elif spec.low is not None:
        bounds = f"{'>' if spec.low_open else '>='} {spec.low}"
    else:
        bounds = "finite"
    if kind is int:
        bounds = f"an integer {bounds}"
    elif not number:
        bounds = f"a number {bounds}"
    return f"{bounds} {note}".rstrip()


_FIELDS = dataclasses.fields(SamplingOptions)
# The type of each option's values, from the annotations (which are strings until evaluated).
KINDS = {name: _kind(hint) for name, hint in typing.get_type_hints(SamplingOptions).items()}
DEFAULTS = SamplingOptions()
