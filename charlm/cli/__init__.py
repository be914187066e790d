"""The `charlm` command group and its error handling. No work happens in the CLI.

Each command lives in its own module below and only parses, calls the Python API and prints.

Generated text goes to stdout; progress and messages go to stderr, so
`charlm generate > story.txt` captures only the story.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from typing import Any

import click
from rich.console import Console

from charlm.device import is_out_of_memory, out_of_memory_message
from charlm.errors import CharlmError

DEBUG_VARIABLE = "CHARLM_DEBUG"


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, log_path=False)


class CharlmGroup(click.Group):
    """Turns every failure into one line on stderr and a non-zero exit.

    Exit 2 for usage errors (Click's convention), 1 for everything else, 130 for Ctrl-C.
    Set CHARLM_DEBUG=1 to get the full traceback of charlm's own errors instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CharlmError as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE) or not is_out_of_memory(exc):
                raise
            advice = (
                "use smaller sizes (train: --batch-size, --seq-len, --hidden; generate: "
                "--num-samples, --beam-width) or --device cpu"
            )
            raise click.ClickException(out_of_memory_message(exc, advice)) from exc

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "charlm"
            _error(f"{exc.format_message()} (see '{command} --help')")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _error(exc.format_message())
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt, EOFError):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(0)


def one_line(message: str) -> str:
    """`message` on one printable line: line breaks, control characters and lone surrogates
    (from file names or arguments that are not valid UTF-8) become escapes such as \\n."""
    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(ch) in _UNPRINTABLE
        else ch
        for ch in message.strip()
    )


_UNPRINTABLE = {"Cc", "Cs", "Zl", "Zp"}


def _error(message: str) -> None:
    click.echo(f"Error: {one_line(message)}", err=True)


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="charlm")
def cli() -> None:
    """Train recurrent language models on books and sample text from them."""


def main() -> None:
    cli()


# Importing the command modules attaches their commands to `cli`.
from charlm.cli import corpus, evaluate, generate, plot, tokenizers, train  # noqa: E402, F401
