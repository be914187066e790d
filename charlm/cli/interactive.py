"""The prompt loop of `charlm generate --interactive`: a prefix in, a continuation out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from charlm.cli.settings import check_settings, unescape
from charlm.errors import CharlmError

HELP = """\
Type a prefix and press Enter to see how the model continues it. Commands:
  /temperature 0.5          randomness (0 = always the most likely token)
  /top-k 40   /top-k off     draw only from the 40 most likely tokens
  /top-p 0.9                nucleus sampling (1 = off)
  /repetition-penalty 1.2   make repeats less likely (1 = off)
  /length 300               tokens per continuation
  /stop \\n\\n   /stop off     end a continuation at this text
  /num-samples 3            several continuations at once
  /beam-width 4             beam search (1 = sampling)
  /seed 7   /seed random    reproducible or fresh continuations
  /label Russian            text of this label (a model trained with --labels)
  /settings                 show the current settings
  /help                     this text
Ctrl-D (or /quit) ends."""


def _optional_int(text: str) -> int | None:
    return None if text == "off" else int(text)


def _optional_seed(text: str) -> int | None:
    return None if text == "random" else int(text)


def _stops(text: str) -> tuple[str, ...]:
    return () if text == "off" else (unescape(text),)


# command -> (setting it changes, how to read the value)
COMMANDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "temperature": ("temperature", float),
    "top-k": ("top_k", _optional_int),
    "top-p": ("top_p", float),
    "repetition-penalty": ("repetition_penalty", float),
    "length": ("length", int),
    "stop": ("stop", _stops),
    "num-samples": ("num_samples", int),
    "beam-width": ("beam_width", int),
    "seed": ("seed", _optional_seed),
    "label": ("label", lambda text: text or None),
}


def run_prompt_loop(settings: dict[str, Any], continue_text: Callable[[str], None]) -> None:
    """Read prefixes until end of input; `continue_text(prefix)` prints each continuation.

    `settings` is changed in place by the commands, and read by `continue_text`.
    """
    click.echo("Type a prefix for a continuation, /help for commands, Ctrl-D to end.", err=True)
    while True:
        try:
            line = click.prompt("", prompt_suffix="> ", default="", show_default=False, err=True)
        except click.Abort:  # Ctrl-D or Ctrl-C at the prompt
            click.echo(err=True)
            return
        except UnicodeDecodeError as exc:  # bytes from the terminal that are not UTF-8
            raise click.ClickException(
                "the input is not valid UTF-8 text; check the terminal's encoding"
            ) from exc
        if line.strip() in ("/quit", "/exit"):
            return
        if line.startswith("/"):
            _run_command(line, settings)
        elif line:
            try:
                continue_text(line)
            except CharlmError as exc:  # e.g. a character the model never saw: try again
                click.echo(f"Error: {exc}", err=True)


def _run_command(line: str, settings: dict[str, Any]) -> None:
    name, _, value = line[1:].strip().partition(" ")
    value = value.strip()
    if name == "help":
        click.echo(HELP, err=True)
        return
    if name == "settings":
        for key, current in settings.items():
            click.echo(f"  {key} = {current!r}", err=True)
        return
    if name not in COMMANDS:
        click.echo(f"Error: unknown command /{name}; /help lists the commands", err=True)
        return
    key, read = COMMANDS[name]
    try:
        changed = {**settings, key: read(value)}
        check_settings(changed)
    except ValueError as exc:  # a bad number, or a ConfigError from the check
        click.echo(f"Error: /{name} {value}: {exc}", err=True)
        return
    settings.update(changed)
    click.echo(f"  {key} = {changed[key]!r}", err=True)
