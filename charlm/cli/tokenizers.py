"""`charlm tokenizers`: every tokenizer charlm can use, where it comes from, its options."""

from __future__ import annotations

import click

from charlm.cli import cli
from charlm.errors import TokenizerError
from charlm.tokenizers import available_tokenizers
from charlm.tokenizers.base import Option


@cli.command()
@click.option(
    "--options/--no-options",
    "show_options",
    default=True,
    show_default=True,
    help="Also list each tokenizer's --tokenizer-option keys.",
)
def tokenizers(show_options: bool) -> None:
    """List the tokenizers for `charlm train --tokenizer NAME`: built in and plugins.

    Plugins are packages that declare an entry point in the group charlm.tokenizers;
    set CHARLM_LOAD_PLUGINS=pkg1,pkg2 to load only some of them (empty: none).
    """
    infos = available_tokenizers()
    width = max(len(info.name) for info in infos)
    for info in infos:
        try:
            cls = info.cls
        except TokenizerError as exc:  # a broken plugin is shown, not fatal
            click.echo(f"{info.name:<{width}}  {info.origin}  (cannot load: {exc})")
            continue
        click.echo(f"{info.name:<{width}}  {cls.description}  [{info.origin}]")
        if show_options:
            for key, option in cls.options.items():
                click.echo(f"{'':<{width}}    {key}={option.type.__name__}: {_described(option)}")


def _described(option: Option) -> str:
    """The option's help, then its default and limits: "... (default 2; at least 1)"."""
    notes = [f"default {option.default}"] if option.default is not None else []
    if option.limits():
        notes.append(option.limits())
    return f"{option.help} ({'; '.join(notes)})" if notes else option.help
