"""`charlm plot`: perplexity curves of one or more runs, and a summary table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from charlm.cli import cli, resolve_checkpoint, stderr_console
from charlm.cli.options import NonEmptyPath
from charlm.training.plotting import default_plot_path, load_run, perplexity_text, plot_runs

COLUMNS = [
    ("run", "run", "{}"),
    ("steps", "steps", "{:,}"),
    ("train_perplexity", "train ppl", perplexity_text),
    ("val_perplexity", "val ppl", perplexity_text),
    ("best_val_perplexity", "best val ppl", perplexity_text),
    ("best_step", "at step", "{:,}"),
    ("val_bpc", "val bpc", "{:.3f}"),
    ("val_accuracy", "val acc", "{:.1%}"),
    ("tokens_per_s", "tokens/s", "{:,.0f}"),
    ("elapsed_s", "time (s)", "{:,.1f}"),
]
# Columns a table printed to a file or a pipe may take: its own width, whatever that is.
WIDEST_TABLE = 1000


@cli.command()
@click.argument("checkpoints", nargs=-1, type=NonEmptyPath(path_type=Path))
@click.option(
    "--out",
    type=NonEmptyPath(path_type=Path),
    default=None,
    help="Where to write the PNG.  [default: CHECKPOINT/perplexity.png for one run; "
    "perplexity-RUN-vs-RUN.png here for several]",
)
@click.option(
    "--x",
    "x",
    type=click.Choice(["step", "time"], case_sensitive=False),
    default="step",
    show_default=True,
    help="Horizontal axis: optimizer steps or training seconds.",
)
def plot(checkpoints: tuple[Path, ...], out: Path | None, x: str) -> None:
    """Draw training and validation perplexity of runs on one figure.

    CHECKPOINTS are run directories (default: the most recently trained one under
    ./checkpoints). Reads each one's metrics.jsonl (it works while a run is still going),
    writes a PNG with a star at each run's best validation perplexity (a classifier's: its most
    accurate evaluation), says where on stderr,
    and prints a summary table on stdout. Needs matplotlib: pip install 'charlm[plot]'.
    """
    checkpoints = checkpoints or (resolve_checkpoint(None),)
    runs = [load_run(path) for path in checkpoints]
    written = plot_runs(runs, out or default_plot_path(list(checkpoints)), x=x)
    summaries = [run.summary() for run in runs]
    # A column no run has a value for is left out (accuracy where no run is a classifier).
    columns = [c for c in COLUMNS if any(s[c[0]] is not None for s in summaries)]
    table = Table(box=None, header_style="bold")
    for _, title, _ in columns:
        if title == "run":
            table.add_column(title, overflow="fold")  # the whole name, wrapped if need be
        else:  # a number is never cut short ("1.36…"): folded onto a second line at worst
            table.add_column(title, justify="right", overflow="fold")
    for summary in summaries:
        table.add_row(*(
            "-" if summary[key] is None else _shown(summary[key], fmt) for key, _, fmt in columns
        ))  # fmt: skip
    # stdout, so that `charlm plot > runs.txt` keeps it; there whole lines, as wide as the
    # table is (Rich would fit a pipe's table to 80 columns).
    width = None if sys.stdout.isatty() else WIDEST_TABLE
    Console(highlight=False, width=width).print(table)
    stderr_console().print(f"wrote {written}")


def _shown(value: object, fmt: str | Callable[[float], str]) -> str:
    return fmt(value) if callable(fmt) else fmt.format(value)
