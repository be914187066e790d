"""The `charlm` command group and its error handling. No work happens in the CLI.

Each command lives in its own module below and only parses, calls the Python API and prints.
A command's module is imported when the command runs (see COMMANDS), so `charlm --help` and
commands that need no model never import PyTorch, which takes a second or more to load.

Generated text goes to stdout; progress and messages go to stderr, so
`charlm generate > story.txt` captures only the story.
"""

from __future__ import annotations

import importlib
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from charlm.errors import CharlmError, Terminated, terminate_as_exception

DEBUG_VARIABLE = "CHARLM_DEBUG"
# How a command line names an unknown-token policy, for errors about unseen characters.
UNKNOWN_ADVICE = "use --unknown {policy}"

# name → (module that defines it, the summary `charlm --help` shows). The summaries are
# written here so that listing the commands imports none of them; a test checks that each
# is its command's own first line.
COMMANDS = {
    "classify": (
        "classify",
        "Label each TEXT by Bayes' rule under a labelled CHECKPOINT, or find a passage's book.",
    ),
    "corpus": (
        "corpus",
        "The catalogue of public-domain books and standard corpora charlm can download.",
    ),
    "evaluate": (
        "evaluate",
        "Score each FILE with CHECKPOINT: cross-entropy, perplexity and bits per character.",
    ),
    "generate": (
        "generate",
        "Continue a prefix with text from CHECKPOINT (default: the latest under ./checkpoints).",
    ),
    "plot": ("plot", "Draw training and validation perplexity of runs on one figure."),
    "serve": ("serve", "Serve CHECKPOINTs over HTTP (default: the latest under ./checkpoints)."),
    "tokenizers": (
        "tokenizers",
        "List the tokenizers for `charlm train --tokenizer NAME`: built in and plugins.",
    ),
    "train": ("train", "Train a model on BOOKS and save it as a checkpoint."),
}


def stderr_console() -> Console:
    """Where messages go. Lines are never cut to the console's width (Rich assumes 80
    columns for a pipe): a terminal wraps them itself, and a log keeps whole lines."""
    return Console(stderr=True, highlight=False, log_path=False, soft_wrap=True)


class CharlmGroup(click.Group):
    """Turns every failure into one line on stderr and a non-zero exit.

    Exit 2 for usage errors (Click's convention), 1 for everything else, 130 for Ctrl-C.
    Set CHARLM_DEBUG=1 to get the full traceback of charlm's own errors instead.
    Commands are imported when first asked for, not to list them (see COMMANDS).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            # Importing the module runs its @cli.command(), which adds the command here.
            importlib.import_module(f"charlm.cli.{COMMANDS[name][0]}")
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        # As Click shortens a command's help to fit the line.
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, self.commands.get(name) or click.Command(name, help=COMMANDS[name][1]))
            for name in names
        ]
        rows = [(name, command.get_short_help_str(limit)) for name, command in rows]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CharlmError as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            error = click.ClickException(str(exc))
            error.exit_code = getattr(exc, "exit_code", 1)  # a stop keeps its own (130, 143)
            raise error from exc
        except BrokenPipeError:
            # The reader of stdout has gone (`charlm generate | head`): nobody to tell. Click's
            # main() ends such a run quietly, with exit status 1.
            raise
        except OSError as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc
        except Exception as exc:
            from charlm.device import is_out_of_memory, out_of_memory_message

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
            # SIGTERM from the start, before a command imports PyTorch (seconds), ends the
            # command as Ctrl-C does: what it began is undone, and it says "Terminated.".
            with terminate_as_exception():
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
        except Terminated:
            click.echo("Terminated.", err=True)
            sys.exit(143)
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


def resolve_checkpoint(checkpoint: Path | None) -> Path:
    """The given checkpoint, or the newest under ./checkpoints (saying which on stderr)."""
    from charlm.checkpoint import latest_checkpoint
    from charlm.training.run import DEFAULT_CHECKPOINT_ROOT

    if checkpoint is not None:
        return checkpoint
    latest = latest_checkpoint(DEFAULT_CHECKPOINT_ROOT)
    if latest is None:
        raise click.ClickException(
            f"no CHECKPOINT given and none found under ./{DEFAULT_CHECKPOINT_ROOT}; "
            "train one with: charlm train BOOK"
        )
    stderr_console().print(f"using {latest} (the most recently trained checkpoint)")
    return latest
