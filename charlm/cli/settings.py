"""Sampling settings as `charlm generate` and its prompt loop read them from the user."""

from __future__ import annotations

from typing import Any

import click

from charlm.sampling.request import make_request

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


def check_settings(settings: dict[str, Any]) -> None:
    """Raise ConfigError (a ValueError) if the settings cannot work together."""
    make_request(prefix="", **settings)
