"""`charlm corpus list` and `charlm corpus fetch`: the catalogue of downloadable books."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from charlm.cli import cli, stderr_console
from charlm.cli.options import NonEmptyPath
from charlm.corpus import DEFAULT_CORPUS_DIR, Entry, fetch, load_catalog
from charlm.corpus.catalog import did_you_mean
from charlm.corpus.download import local_path

_dir_option = click.option(
    "--dir",
    "directory",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    default=DEFAULT_CORPUS_DIR,
    show_default=True,
    help="Where downloaded books are kept.",
)


@cli.group()
def corpus() -> None:
    """The catalogue of public-domain books and standard corpora charlm can download."""


@corpus.command("list")
@_dir_option
def list_books(directory: Path) -> None:
    """List the catalogue and which books are already downloaded."""
    entries = list(load_catalog().values())
    rows = [("name", "size", "downloaded", "title")]
    for entry in entries:
        path = local_path(entry, directory)
        here = path.is_file() and path.stat().st_size == entry.size
        rows.append((entry.name, _size(entry.size), str(path) if here else "-", entry.title))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, size, where, title in rows:
        click.echo(f"{name:<{widths[0]}}  {size:>{widths[1]}}  {where:<{widths[2]}}  {title}")


@corpus.command("fetch")
@click.argument("names", nargs=-1, required=True)
@_dir_option
def fetch_books(names: tuple[str, ...], directory: Path) -> None:
    """Download catalogue books NAMES into the corpus directory (checked by SHA-256).

    A book already there is left alone. Set CHARLM_CORPUS_MIRROR to a URL or a local
    directory holding NAME.txt files to fetch from there instead, e.g. on a machine
    without internet access.
    """
    catalog = load_catalog()
    unknown = [n for n in names if n not in catalog]
    if unknown:  # a name the catalogue lacks is a mistake in the command line: exit 2
        hint = did_you_mean(unknown[0], catalog) or "; 'charlm corpus list' lists the books"
        raise click.UsageError(f"no book named {unknown[0]!r} in the catalogue{hint}")
    console = stderr_console()
    for name in names:
        _fetch_one(catalog[name], directory, console)


def _fetch_one(entry: Entry, directory: Path, console: Console) -> None:
    progress = Progress(
        TextColumn(f"[bold]{entry.name}[/]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(entry.name, total=entry.size)
        fetched = fetch(
            entry,
            directory,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if fetched.downloaded:
        console.print(f"downloaded {entry.name} from {fetched.source} to {fetched.path}")
    else:
        console.print(f"{entry.name} is already at {fetched.path}")


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
