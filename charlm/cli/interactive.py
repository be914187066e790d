"""The prompt loop of `charlm generate --interactive`: a prefix in, a continuation out.

Every option of `charlm generate` that `SamplingOptions` defines is a command here too
(`--top-k 40` becomes `/top-k 40`), read, checked and explained by the same field.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from charlm.cli.options import unk_problem
from charlm.errors import CharlmError, ConfigError, UnknownTokenError
from charlm.options import Option, flag_name, option_fields
from charlm.sampling import SamplingOptions
from charlm.sampling.options import KINDS, rule_of
from charlm.sampling.stops import ESCAPES

if TYPE_CHECKING:
    from charlm.sampling import Sampler

HELP_INDENT = 30
# Typed alone, these end the loop; any other line that is not a command is a prefix.
QUIT = ("/quit", "/exit")
# Typed after any command, these restore its default (as does the field's own word, if any).
OFF = ("off", "default")
# How the prompt names an unknown-token policy, for errors about unseen characters.
UNKNOWN_ADVICE = "type /unknown {policy}"


def prompt_help() -> str:
    """/help: one command per option, explained by the option's help."""
    lines = ["Type a prefix and press Enter to see how the model continues it. Commands:"]
    for name, (field, spec) in _commands().items():
        command = f"/{name} {_metavar(field, spec)}"
        if rule_of(field).off:
            command += f" | {rule_of(field).off}"
        lines.append(_help_line(command, _in_prompt_words(spec.help)))
    lines.append(_help_line("/NAME off", "restore a setting's default (so does /NAME default)"))
    lines.append(_help_line("/settings", "show the current settings (/NAME alone shows one)"))
    lines.append(_help_line("//TEXT", "continue /TEXT: a prefix that begins with /"))
    lines.append(_help_line("/help", "this text"))
    lines.append("Ctrl-C stops a continuation. /quit or Ctrl-D ends (Ctrl-C at the prompt too).")
    return "\n".join(lines)


def model_check(sampler: Sampler) -> Callable[[SamplingOptions], None]:
    """For `run_prompt_loop`: a ConfigError for settings `sampler` can never use (a label it
    lacks, guidance without labels, <unk> without the token), so the command is refused."""

    def check(options: SamplingOptions) -> None:
        # A labelled model may go without a label until /label sets one.
        if options.label is not None or not sampler.labels:
            sampler.check_label(options.label, options.guidance)
        problem = unk_problem([sampler.tokenizer], options.unknown)
        if problem:
            raise ConfigError(problem)

    return check


def run_prompt_loop(
    options: SamplingOptions,
    continue_text: Callable[[str, SamplingOptions], None],
    check: Callable[[SamplingOptions], None] | None = None,
) -> None:
    """Read prefixes until /quit or end of input; `continue_text(prefix, options)` prints each
    continuation with the options as the commands typed so far have set them.

    `check(options)` raises ConfigError for settings the model cannot use (`model_check`):
    a command that makes them is refused, and so are such starting options (a UsageError).
    """
    check = check or (lambda options: None)
    _line_editing()
    try:
        check(options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo("Type a prefix for a continuation, /help for commands, /quit to end.", err=True)
    while (line := _next_line()) is not None:
        if line.strip().lower() in QUIT:
            return
        if line.startswith("/") and not line.startswith("//"):
            options = _run_command(line, options, check)
        else:  # "//TEXT" is the prefix "/TEXT", as in IRC clients; an empty line, ""
            _continue(line.removeprefix("/"), options, continue_text)


def _line_editing() -> None:
    """On a terminal, let input() read lines through GNU readline (as Python's own prompt
    does): arrow keys edit and recall earlier prefixes, and a pasted line may be longer than
    the 4,095 characters the terminal's own line editor keeps (it cut the rest silently)."""
    try:
        import readline  # noqa: F401  (importing it is what switches input() over)
    except ImportError:  # Windows has none: lines are read as before
        pass


def _next_line() -> str | None:
    """The line typed at the prompt; None at Ctrl-D. Ctrl-C raises click.Abort, which ends
    the session as Ctrl-C ends any command ("Aborted.", exit 130)."""
    # On a terminal the prompt goes to stdout, the terminal too: input() hands a line to
    # readline only while sys.stdout is the real stdout. Otherwise it stays off the output.
    on_terminal = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        return click.prompt(
            "", prompt_suffix="> ", default="", show_default=False, err=not on_terminal
        )
    except click.Abort as exc:
        click.echo(err=True)  # end the prompt's line
        # click.prompt turns both keys into Abort; the key's exception is its context.
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise
        return None
    except UnicodeDecodeError as exc:  # bytes from the terminal that are not UTF-8
        raise click.ClickException(
            "the input is not valid UTF-8 text; check the terminal's encoding"
        ) from exc


def _continue(
    prefix: str, options: SamplingOptions, continue_text: Callable[[str, SamplingOptions], None]
) -> None:
    """Print the continuation of `prefix`; an error or Ctrl-C ends it, not the loop."""
    try:
        continue_text(prefix, options)
    except KeyboardInterrupt:  # Ctrl-C while the model writes: back to the prompt
        click.echo()  # end the line the continuation was printing
        click.echo("(stopped)", err=True)
    except UnknownTokenError as exc:  # a character the model never saw: try again
        click.echo(f"Error: {exc.describe('the prefix', UNKNOWN_ADVICE)}", err=True)
    except CharlmError as exc:
        click.echo(f"Error: {exc}", err=True)


def _run_command(
    line: str, options: SamplingOptions, check: Callable[[SamplingOptions], None]
) -> SamplingOptions:
    """The options after the command on `line` (unchanged, with a message, if it is bad)."""
    name, _, value = line[1:].strip().partition(" ")
    value = value.strip()
    if name == "help":
        click.echo(prompt_help(), err=True)
        return options
    commands = _commands()
    if name == "settings":
        for command in commands:
            click.echo(_setting_line(command, options), err=True)
        return options
    if name not in commands:
        click.echo(f"Error: unknown command /{name}; /help lists the commands", err=True)
        return options
    if not value:  # /temperature alone: what it is now
        click.echo(_setting_line(name, options), err=True)
        return options
    field, spec = commands[name]
    try:
        changed = options.replace(**{field.name: _read(value, options, field, spec)})
        check(changed)
    except ConfigError as exc:  # out of range, unusable with the model or with other options
        click.echo(f"Error: /{name} {value}: {_in_prompt_words(str(exc))}", err=True)
        return options
    except ValueError:  # not a number at all
        click.echo(f"Error: /{name} {value}: {_wanted(name, field, spec)}", err=True)
        return options
    click.echo(_setting_line(name, changed), err=True)
    return changed


def _in_prompt_words(text: str) -> str:
    """Help or an error as the prompt says it: an option that is a command as the command
    ("--top-k" and "top_k" read "top-k"), and None as off. Other options (--labels) stay."""
    commands = _commands()
    for command, (field, _) in commands.items():
        text = re.sub(rf"\b{field.name}\b", command, text)
    text = re.sub(
        r"--([a-z]+(?:-[a-z]+)*)",
        lambda match: f"/{match[1]}" if match[1] in commands else match[0],
        text,
    )
    return re.sub(r"\bNone\b", "off", text)


def _setting_line(command: str, options: SamplingOptions) -> str:
    """One setting as the user gave it: "  top-k = 40", "  seed = random", "  stop = "\\n"."""
    field, spec = _commands()[command]
    return f"  {command} = {_shown(field, spec, getattr(options, field.name))}"


def _shown(field: dataclasses.Field, spec: Option, value: Any) -> str:
    """A value in the user's words: what None or no stop string means, numbers as typed."""
    if value is None or value == ():
        return spec.shown_default or rule_of(field).off or "none"
    if spec.multiple:
        return ", ".join(f'"{_escaped(one)}"' for one in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _escaped(text: str) -> str:
    """`text` as it would be typed: a newline as \\n (the escapes /stop reads)."""
    typed = {meaning: f"\\{letter}" for letter, meaning in ESCAPES.items()}
    return "".join(typed.get(ch, ch) for ch in text)


def _wanted(command: str, field: dataclasses.Field, spec: Option) -> str:
    """What a command takes, for a value that is not one: "not a number (e.g. /length 500)"."""
    kind = {int: "a whole number", float: "a number"}.get(KINDS[field.name], "a value")
    off = rule_of(field).off
    if off:  # the default is a word: say it
        means = f": {spec.shown_default}" if spec.shown_default not in (None, off) else ""
        return f"not {kind} (or {off}{means})"
    return f"not {kind} (e.g. /{command} {_shown(field, spec, field.default)})"


def _commands() -> dict[str, tuple[dataclasses.Field, Option]]:
    """Command name -> the option it sets: every option of `charlm generate` from the fields."""
    return {flag_name(f, spec)[2:]: (f, spec) for f, spec in option_fields(SamplingOptions)}


def _read(text: str, options: SamplingOptions, field: dataclasses.Field, spec: Option) -> Any:
    """The value typed after a command, as the field takes it; an `off` word is the default.

    A repeatable option (/stop) adds the value to those it has, as repeating it on the
    command line does.
    """
    if text in OFF or text == rule_of(field).off:
        return field.default
    if spec.parse is not None:
        value = spec.parse(text)
    else:
        value = {int: int, float: float}.get(KINDS[field.name], str)(text)
    if isinstance(value, float) and not math.isfinite(value):  # "inf" reads as a number
        raise ValueError(f"{text} is not a number")
    return (*getattr(options, field.name), value) if spec.multiple else value


def _metavar(field: dataclasses.Field, spec: Option) -> str:
    if spec.choices:
        return "|".join(spec.choices)
    return spec.metavar or {int: "N", float: "X"}.get(KINDS[field.name], "TEXT")


def _help_line(command: str, text: str) -> str:
    """`command` and its explanation in a column, which starts on the next line if need be."""
    lines = textwrap.wrap(text, width=100 - HELP_INDENT)
    command = f"  {command}"
    if len(command) < HELP_INDENT:
        return "\n".join([command.ljust(HELP_INDENT) + lines[0], *_indented(lines[1:])])
    return "\n".join([command, *_indented(lines)])


def _indented(lines: list[str]) -> list[str]:
    return [" " * HELP_INDENT + line for line in lines]
