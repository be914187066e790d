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


class EscapedText(click.ParamType):
    """Text in which \\n, \\t and \\\\ stand for a newline, a tab and a backslash."""

    name = "TEXT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        return unescape(value)


def check_settings(settings: dict[str, Any]) -> None:
    """Raise ConfigError (a ValueError) if the settings cannot work together."""
    make_request(prefix="", **settings)
