"""Short examples, labelled or not: names, sentences, reviews, each one text of its own.

Where the labels come from (`labels`):

    files   each file is one label, its name without the extension (names/Russian.txt → Russian)
    dirs    each subdirectory is one label, its files at any depth the examples
            (reviews/pos/*.txt, reviews/pos/2023/*.txt → pos)
    table   .tsv, .csv or .jsonl files with a text column and a label column
    None    no labels: examples of one kind (names of any language)

What one example is (`examples`): `lines`, every non-empty line; or `files`, every file whole.
A table's examples are its rows. Surrounding whitespace is removed from every example. A row
whose text is empty is no example: it is skipped and counted (`ExampleSet.skipped`), and a
label that only such rows had is named (`ExampleSet.empty_labels`).

Each file goes through the book reader (`read_book`), so encodings are detected and line
endings normalised exactly as for books.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from charlm.errors import ConfigError, CorpusError

from .inputs import resolve_inputs
from .reading import Book, read_book
from .tables import TABLE_FORMATS, table_rows

LABEL_SOURCES = ("files", "dirs", "table")
EXAMPLE_UNITS = ("lines", "files")


@dataclass
class ExampleSet:
    """Examples and their labels (None throughout when unlabelled), in the order read."""

    texts: list[str]
    labels: list[str] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)  # how each file was read
    unit: str = "lines"  # "lines", "files" or "rows": what one example was
    # What reading left out: a table's rows whose text is empty, and the labels that only
    # such rows had. (An empty file is an error of the book reader; blank lines are no
    # examples, and not counted.)
    skipped: int = 0
    empty_labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        """The distinct labels, sorted; [] when unlabelled."""
        return sorted(set(self.labels)) if self.labels is not None else []

    def label_counts(self) -> dict[str, int]:
        """Examples per label, in label order."""
        counts = Counter(self.labels or [])
        return {label: counts[label] for label in self.label_names}

    def subset(self, indices: Sequence[int]) -> ExampleSet:
        """The examples at `indices`, in that order."""
        labels = None if self.labels is None else [self.labels[i] for i in indices]
        return replace(self, texts=[self.texts[i] for i in indices], labels=labels)

    def pairs(self) -> list[tuple[str, str | None]]:
        labels = self.labels if self.labels is not None else [None] * len(self.texts)
        return list(zip(self.texts, labels))

    def deduplicated(self) -> ExampleSet:
        """Each (text, label) pair once, where it first occurs."""
        seen: set[tuple[str, str | None]] = set()
        keep = []
        for index, pair in enumerate(self.pairs()):
            if pair not in seen:
                seen.add(pair)
                keep.append(index)
        return self.subset(keep)

    def describe_skipped(self, shown: int = 5) -> str | None:
        """What reading left out, for the line that reports it; None when nothing was."""
        parts = []
        if self.skipped:
            s = "s" * (self.skipped != 1)
            parts.append(f"{self.skipped:,} row{s} with an empty text skipped")
        if self.empty_labels:
            names = ", ".join(self.empty_labels[:shown])
            more = len(self.empty_labels) - shown
            names += f" and {more} more" if more > 0 else ""
            many = len(self.empty_labels) != 1
            parts.append(
                f"the label{'s' * many} {names} {'have' if many else 'has'} no example: "
                f"all {'their' if many else 'its'} texts are empty"
            )
        return "; ".join(parts) or None

    def duplicates(self) -> Duplicates:
        """How often examples repeat, per label, and how many texts carry several labels."""
        per_label: dict[str | None, tuple[int, int]] = {}
        pairs = self.pairs()
        totals = Counter(label for _, label in pairs)
        distinct = Counter(label for _, label in set(pairs))
        for label in totals:
            per_label[label] = (totals[label], distinct[label])
        labels_of: dict[str, set] = {}
        for text, label in set(pairs):
            labels_of.setdefault(text, set()).add(label)
        several = sum(1 for found in labels_of.values() if len(found) > 1)
        return Duplicates(per_label, several)


@dataclass
class Duplicates:
    """Repeated examples: per label (examples, distinct examples), and ambiguous texts."""

    per_label: dict[str | None, tuple[int, int]]
    texts_with_several_labels: int = 0

    @property
    def repeated(self) -> int:
        """Examples that repeat an earlier example with the same text and label."""
        return sum(total - distinct for total, distinct in self.per_label.values())

    def describe(self, shown: int = 5) -> str | None:
        """One line for the user, or None when nothing repeats."""
        if not self.repeated and not self.texts_with_several_labels:
            return None
        parts = []
        if self.repeated:
            worst = sorted(
                (item for item in self.per_label.items() if item[1][0] > item[1][1]),
                key=lambda item: item[1][1] - item[1][0],
            )
            where = ", ".join(
                f"{label} {total:,} ({distinct:,} distinct)"
                for label, (total, distinct) in worst[:shown]
                if label is not None
            )
            more = f" and {len(worst) - shown} more labels" if len(worst) > shown else ""
            parts.append(
                f"{self.repeated:,} examples repeat an earlier one"
                + (f": {where}{more}" if where else "")
            )
        if self.texts_with_several_labels:
            parts.append(f"{self.texts_with_several_labels:,} texts carry more than one label")
        return "duplicates: " + "; ".join(parts)


def read_examples(
    specs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    labels: str | None = None,
    examples: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str | None = None,
    keep_boilerplate: bool = False,
) -> ExampleSet:
    """The examples in `specs` (files, directories, globs), read as `labels` and `examples` say.

    `examples` defaults to "lines"; a table's examples are its rows.
    """
    check_format(labels, examples)
    unit = examples or "lines"
    read = _Reader(encoding, keep_boilerplate)
    columns = (text_column, label_column)
    if labels == "table":
        rows = [row for path in _table_files(specs) for row in read.table(path, *columns)]
        # A row with an empty text is no example: skipped, but counted, and a label that
        # only such rows had is named.
        kept = [(text, label) for text, label in rows if text]
        texts, tags = [text for text, _ in kept], [label for _, label in kept]
        present = set(tags)
        named = dict.fromkeys(label for _, label in rows)
        empty = [label for label in named if label not in present]
        return _checked(
            ExampleSet(texts, tags, read.described, "rows", len(rows) - len(kept), empty)
        )
    if labels == "dirs":
        groups = [(path.name, _files_in(path)) for path in _label_dirs(specs)]
    else:
        files = resolve_inputs(specs)
        groups = list(zip(file_labels(files), ([p] for p in files)))
    texts, tags = [], []
    for label, paths in groups:
        for path in paths:
            found = read.examples(path, unit)
            texts += found
            tags += [label] * len(found)
    return _checked(ExampleSet(texts, tags if labels else None, read.described, unit))


def check_format(labels: str | None, examples: str | None) -> None:
    """Raise ConfigError for a `labels` / `examples` pair that cannot be read."""
    if labels is not None and labels not in LABEL_SOURCES:
        raise ConfigError(f"unknown --labels {labels!r}; use one of {', '.join(LABEL_SOURCES)}")
    if examples is not None and examples not in EXAMPLE_UNITS:
        raise ConfigError(f"unknown --examples {examples!r}; use one of {', '.join(EXAMPLE_UNITS)}")
    if labels == "table" and examples == "files":
        raise ConfigError("a table's examples are its rows; drop --examples files")


def file_labels(files: Sequence[Path]) -> list[str]:
    """The label each file stands for: its name without the extension; when the files share
    one name and differ by extension (rt-polarity.pos, rt-polarity.neg), the extension
    (pos, neg); otherwise the whole name when two files would share a label."""
    stems = [path.stem for path in files]
    if len(set(stems)) == len(stems):
        return stems
    extensions = [path.suffix[1:] for path in files]
    if len(set(stems)) == 1 and all(extensions) and len(set(extensions)) == len(extensions):
        return extensions
    names = [path.name for path in files]
    if len(set(names)) != len(names):
        raise CorpusError(
            f"two files are named {Counter(names).most_common(1)[0][0]}; with --labels files "
            "each file is one label, so their names must differ"
        )
    return names


class _Reader:
    """Reads files through `read_book`, keeping a description of each for the checkpoint."""

    def __init__(self, encoding: str | None, keep_boilerplate: bool) -> None:
        self.encoding, self.keep_boilerplate = encoding, keep_boilerplate
        self.described: list[dict[str, Any]] = []

    def book(self, path: Path) -> Book:
        book = read_book(path, encoding=self.encoding, keep_boilerplate=self.keep_boilerplate)
        self.described.append(book.describe())
        return book

    def examples(self, path: Path, unit: str) -> list[str]:
        text = self.book(path).text
        if unit == "files":
            return [text.strip()] if text.strip() else []
        return [line.strip() for line in text.split("\n") if line.strip()]

    def table(self, path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
        # A table is data, not a book: no Project Gutenberg header can be in it.
        book = read_book(path, encoding=self.encoding, keep_boilerplate=True)
        self.described.append(book.describe())
        return table_rows(book.text, path, text_column, label_column)


def _table_files(specs) -> list[Path]:
    return resolve_inputs(specs) if not _is_dir_list(specs) else _tables_in_dirs(specs)


def _is_dir_list(specs) -> bool:
    specs = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    return bool(specs) and all(Path(s).is_dir() for s in specs)


def _tables_in_dirs(specs) -> list[Path]:
    specs = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    files = [
        p for d in specs for p in sorted(Path(d).iterdir()) if p.suffix.lower() in TABLE_FORMATS
    ]
    if not files:
        raise CorpusError(f"{specs[0]} holds no .tsv, .csv or .jsonl file")
    return files


def _label_dirs(specs) -> list[Path]:
    specs = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    if not specs:
        raise CorpusError("no data given; name a directory with one subdirectory per label")
    found = []
    for spec in specs:
        path = Path(spec)
        if not path.is_dir():
            raise CorpusError(
                f"{path} is not a directory; --labels dirs takes a directory with one "
                "subdirectory per label"
            )
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise CorpusError(f"{path} has no subdirectories; with --labels dirs each is a label")
        found += subdirs
    return found


def _files_in(directory: Path) -> list[Path]:
    """The files of a label's directory and of its subdirectories at any depth, in the order
    of their paths; hidden files and directories (.name) are left out, and links to
    directories are not followed."""
    files = []
    for folder, subdirs, names in os.walk(directory, onerror=_unreadable):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        files += [
            Path(folder, name)
            for name in names
            if not name.startswith(".") and Path(folder, name).is_file()
        ]
    if not files:
        raise CorpusError(
            f"{directory} holds no files, nor do its subdirectories (the label "
            f"{directory.name!r} is empty)"
        )
    return sorted(files, key=lambda path: path.relative_to(directory).parts)


def _unreadable(exc: OSError) -> None:
    raise CorpusError(f"{exc.filename}: cannot read the directory ({exc.strerror or exc})") from exc


def _checked(found: ExampleSet) -> ExampleSet:
    if not found.texts:
        raise CorpusError("no examples found: every line and file read is empty")
    return found
