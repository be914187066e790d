"""`charlm plot`: perplexity curves of one or more runs, and a summary table."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from charlm.cli import cli, stderr_console
from charlm.training.plotting import load_run, plot_runs

COLUMNS = [
    ("run", "run", "{}"),
    ("steps", "steps", "{:,}"),
    ("train_perplexity", "train ppl", "{:.3f}"),
    ("val_perplexity", "val ppl", "{:.3f}"),
    ("best_val_perplexity", "best val ppl", "{:.3f}"),
    ("best_step", "at step", "{:,}"),
    ("val_bpc", "val bpc", "{:.3f}"),
    ("tokens_per_s", "tokens/s", "{:,.0f}"),
    ("elapsed_s", "time (s)", "{:,.1f}"),
]


@cli.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("perplexity.png"),
    show_default=True,
    help="Where to write the PNG.",
)
@click.option(
    "--x",
    "x",
    type=click.Choice(["step", "time"]),
    default="step",
    show_default=True,
    help="Horizontal axis: optimizer steps or training seconds.",
)
def plot(checkpoints: tuple[Path, ...], out: Path, x: str) -> None:
    """Draw training and validation perplexity of CHECKPOINTS (runs) on one figure.

    Reads each checkpoint's metrics.jsonl (it works while a run is still going), writes a
    PNG and prints a summary table. Needs matplotlib: pip install 'charlm[plot]'.
    """
    runs = [load_run(path) for path in checkpoints]
    written = plot_runs(runs, out, x=x)
    table = Table(box=None, header_style="bold")
    for _, title, _ in COLUMNS:
        if title == "run":
            table.add_column(title, overflow="fold")  # the whole name, wrapped if need be
        else:
            table.add_column(title, justify="right")
    for run in runs:
        summary = run.summary()
        table.add_row(*(
            "-" if summary[key] is None else fmt.format(summary[key]) for key, _, fmt in COLUMNS
        ))  # fmt: skip
    console = stderr_console()
    console.print(table)
    console.print(f"wrote {written}")
