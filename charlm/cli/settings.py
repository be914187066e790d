"""Sampling settings as `charlm generate` and its prompt loop read them from the user.

The options come from the fields of `SamplingOptions`: name, type, bounds, default and help
are written there once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from charlm.errors import ConfigError
from charlm.sampling.options import SamplingOptions, Setting, setting_of

ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """`text` with \\n, \\t and \\\\ turned into a newline, a tab and a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPES:
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class Utf8Text(click.ParamType):
    """Text from the command line, refused when it holds bytes that are not UTF-8 (Python
    passes those on as lone surrogates, which no tokenizer or terminal can take)."""

    name = "TEXT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            self.fail("is not valid UTF-8 text; check the terminal's encoding", param, ctx)
        return value


class EscapedText(Utf8Text):
    """Text in which \\n, \\t and \\\\ stand for a newline, a tab and a backslash."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        return unescape(super().convert(value, param, ctx))


def cli_settings() -> list[tuple[dataclasses.Field, Setting]]:
    """The fields of `SamplingOptions` that are options of `charlm generate`, in order."""
    fields = dataclasses.fields(SamplingOptions)
    return [(field, setting_of(field)) for field in fields if setting_of(field).cli]


def flag(name: str) -> str:
    """The option's name on the command line and at the prompt: top_k -> top-k."""
    return name.replace("_", "-")


def sampling_options(command: Callable) -> Callable:
    """Give `command` one option per CLI field of `SamplingOptions`, named, typed, defaulted
    and explained by the field; the command receives them as keywords of the field names."""
    for field, setting in reversed(cli_settings()):
        option = click.option(
            f"--{flag(field.name)}", field.name, **_click_settings(field, setting)
        )
        command = option(command)
    return command


def options_from_cli(values: dict[str, Any]) -> SamplingOptions:
    """The options the command line asked for; a combination that cannot work is a usage error."""
    try:
        return SamplingOptions.from_dict(values)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _click_settings(field: dataclasses.Field, setting: Setting) -> dict[str, Any]:
    # Click cannot show a default of None or (): the field says in words what it means.
    shown = f"  [default: {setting.empty}]" if setting.empty else ""
    return {
        "type": _click_type(setting),
        "help": setting.help + shown,
        "default": field.default,
        "show_default": True,
        "multiple": setting.multiple,
    }


def _click_type(setting: Setting) -> click.ParamType:
    if setting.choices:
        return click.Choice(setting.choices)
    if setting.kind is str:
        return EscapedText()
    ranged = click.IntRange if setting.kind is int else click.FloatRange
    return ranged(min=setting.low, max=setting.high, min_open=setting.low_open)
