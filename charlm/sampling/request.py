"""One call to the sampler: the prefix and the options, checked before any work is done."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from charlm.errors import ConfigError
from charlm.sampling.options import DEFAULTS, SamplingOptions

# `generate`, `stream` and `samples` take these options by position after the prefix, as
# they always have: generate("It was", 300, 0.8, 1).
POSITIONAL = ("length", "temperature", "seed")


@dataclass(frozen=True)
class Request:
    """What to draw: the prefix, and checked options whose seed is resolved (never None)."""

    prefix: str
    options: SamplingOptions


def call_options(
    method: str,
    args: tuple[Any, ...],
    options: SamplingOptions | None,
    settings: Mapping[str, Any],
) -> SamplingOptions:
    """The options of a `method(prefix, *args, options=options, **settings)` call.

    `args` are the POSITIONAL options; `settings` change `options` (default: the defaults).
    """
    if len(args) > len(POSITIONAL):
        names = ", ".join(("prefix", *POSITIONAL))
        raise TypeError(
            f"{method}() takes at most {1 + len(POSITIONAL)} positional arguments ({names})"
        )
    for name in POSITIONAL[: len(args)]:
        if name in settings:
            raise TypeError(f"{method}() got {name} both by position and by keyword")
    if options is not None and not isinstance(options, SamplingOptions):
        raise TypeError(f"options must be a SamplingOptions, got {type(options).__name__}")
    base = options if options is not None else DEFAULTS
    return base.replace(**dict(zip(POSITIONAL, args)), **settings)


def check_text(value: Any, name: str) -> None:
    """A ConfigError naming `name` unless `value` is a string (not None, a number, a list)."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {type(value).__name__}")


def make_request(prefix: str, options: SamplingOptions) -> Request:
    """The request, with a random seed picked if the options leave it to chance."""
    check_text(prefix, "prefix")
    if options.seed is None:
        options = options.replace(seed=secrets.randbits(32))
    return Request(prefix, options)
