"""What the user named → the text files to read: files, directories, globs, catalogue names."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from charlm.errors import CorpusError

from .catalog import DEFAULT_CORPUS_DIR, did_you_mean, load_catalog
from .download import Progress, fetch, is_present, source_of

_GLOB_CHARS = set("*?[")


def resolve_inputs(
    specs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    corpus_dir: str | os.PathLike = DEFAULT_CORPUS_DIR,
    message: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """The files behind `specs`, in order, each once.

    A spec is a file; a directory (its `.txt` files, sorted by name); a glob pattern
    (matches sorted); or the name of a catalogue book, downloaded into `corpus_dir` if needed.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if not specs:
        raise CorpusError("no book given; name a text file, a directory, a glob or a book name")
    paths: list[Path] = []
    for spec in specs:
        for path in _expand(str(spec), Path(corpus_dir), message, progress):
            if path.resolve() not in {p.resolve() for p in paths}:
                paths.append(path)
    return paths


def input_name(specs: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """A short name for what was given, for the default checkpoint directory."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    first = Path(str(specs[0]))
    stem = first.stem if first.suffix == ".txt" else first.name
    stem = stem.replace("*", "").replace("?", "") or "corpus"
    return stem if len(specs) == 1 else f"{stem}-and-{len(specs) - 1}-more"


def _catalogue() -> dict:
    try:
        return load_catalog()
    except CorpusError:  # no catalogue here (an installed wheel): the name is just a missing path
        return {}


def _catalog_entry(name: str):
    return None if os.sep in name else _catalogue().get(name)


def _suggestion(spec: str) -> str:
    return "" if os.sep in spec else did_you_mean(spec, _catalogue())


def _expand(
    spec: str, corpus_dir: Path, message: Callable[[str], None] | None, progress: Progress | None
) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise CorpusError(f"{path} is a directory with no .txt files in it")
        return files
    if path.exists():
        return [path]
    if _GLOB_CHARS & set(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise CorpusError(f"{spec!r} matches no files")
        return files
    entry = _catalog_entry(spec)
    if entry is None:
        raise CorpusError(
            f"{spec}: no such file, directory or catalogue book{_suggestion(spec)} "
            "(see 'charlm corpus list')"
        )
    say = message or (lambda text: None)
    if not is_present(entry, corpus_dir):
        say(f"downloading {entry.name} ({entry.size:,} bytes) from {source_of(entry)}")
    fetched = fetch(entry, corpus_dir, progress=progress)
    if fetched.downloaded:
        say(f"downloaded {entry.name} ({entry.title}) to {fetched.path}, SHA-256 verified")
    return [fetched.path]
