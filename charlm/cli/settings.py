"""Sampling settings as `charlm generate` reads them from the user.

The options themselves come from the fields of `SamplingOptions` (see charlm/options.py):
name, type, bounds, default and help are written there once.
"""

from __future__ import annotations

from typing import Any

import click

from charlm.cli.options import config_values
from charlm.errors import ConfigError
from charlm.sampling import SamplingOptions


class Utf8Text(click.ParamType):
    """Text from the command line, refused when it holds bytes that are not UTF-8 (Python
    passes those on as lone surrogates, which no tokenizer or terminal can take)."""

    name = "TEXT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            self.fail("is not valid UTF-8 text; check the terminal's encoding", param, ctx)
        return value


def options_from_cli(params: dict[str, Any]) -> SamplingOptions:
    """The options the command line asked for; a combination that cannot work is a usage error."""
    try:
        return SamplingOptions.from_dict(config_values(SamplingOptions, params))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
