"""Tables of labelled examples: .tsv, .csv and .jsonl rows → (text, label) pairs.

A tab-separated file is read without quoting (a review may hold a lone quote mark); a CSV file
with the usual quoting; a JSON Lines file one object a line. Errors name the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from charlm.errors import CorpusError

TABLE_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl"}

# csv.field_size_limit is one setting for the whole process; charlm raises it while it reads a
# table and puts it back after, one table at a time.
_FIELD_LIMIT_LOCK = threading.Lock()


def table_rows(text: str, path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """The (text, label) of every row of the table `text` read from `path`, in order. A text
    may be empty ("" for an empty or blank cell, or JSON null): the caller skips such rows and
    counts them. An empty label is an error."""
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CorpusError(
            f"{path}: --labels table reads .tsv, .csv and .jsonl files, not "
            f"{path.suffix or 'files without an extension'}"
        )
    rows = _json_rows(text, path) if kind == "jsonl" else _csv_rows(text, kind, path)
    found = []
    for number, row in rows:
        example = _cell(row, text_column, path, number)
        label = _cell(row, label_column, path, number)
        if not label:
            raise CorpusError(f"{path}, row {number}: the {label_column!r} column is empty")
        found.append((example, label))
    return found


def _csv_rows(text: str, kind: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Each row after the header as {column: value}, numbered as rows of the table (the
    header is row 1). A header naming a column more than once is an error, and so is a row with
    more or fewer fields than the header: with a tab or an unquoted comma in a text, its label
    would be a piece of the text."""
    # The csv module refuses a field over 131,072 characters by default; a .jsonl text has no
    # such limit, and no field can be longer than the whole table, so that is the limit here.
    with _FIELD_LIMIT_LOCK:
        default = csv.field_size_limit()
        csv.field_size_limit(max(default, len(text) + 1))
        try:
            return _csv_rows_within_limit(text, kind, path)
        finally:
            csv.field_size_limit(default)


def _csv_rows_within_limit(text: str, kind: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    # Tab-separated files are read without quoting: a review may hold a lone quote mark.
    quoting = csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL
    delimiter = "\t" if kind == "tsv" else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting, strict=True)
    rows, header, number = [], None, 1
    try:
        for fields in reader:
            if not fields:  # a blank line
                continue
            if header is None:
                header = fields
                _check_header(header, path)
                continue
            number += 1
            if len(fields) != len(header):
                raise CorpusError(
                    f"{path}, row {number} (line {reader.line_num}) has {len(fields)} "
                    f"field{'s' * (len(fields) != 1)}, the header {len(header)}"
                    + (
                        "; a text with a tab cannot be in a .tsv file: use .csv or .jsonl"
                        if kind == "tsv" and len(fields) > len(header)
                        else ""
                    )
                )
            rows.append((number, dict(zip(header, fields, strict=True))))
    except csv.Error as exc:  # an unclosed quote
        unclosed = " (a quote opened and never closed)" if "end of data" in str(exc) else ""
        raise CorpusError(
            f"{path}, row {number + 1} (line {reader.line_num}): {exc}{unclosed}"
        ) from exc
    return rows


def _check_header(header: list[str], path: Path) -> None:
    """A column named twice is ambiguous: a row would hold two values for it."""
    name, count = Counter(header).most_common(1)[0]  # a header has one field at least
    if count > 1:
        raise CorpusError(f"{path}: the header names the column {name!r} more than once")


def _json_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_JsonObject.of)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}, line {number}: not a JSON object ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise CorpusError(f"{path}, line {number}: not a JSON object")
        if row.repeated is not None:  # json.loads would keep the last value unseen
            raise CorpusError(
                f"{path}, line {number}: the object names {row.repeated!r} more than once"
            )
        rows.append((number, row))
    return rows


class _JsonObject(dict):
    """A JSON object, with the first key it names twice (None when none)."""

    repeated: str | None = None

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        found = cls(pairs)
        if len(found) != len(pairs):
            found.repeated = Counter(key for key, _ in pairs).most_common(1)[0][0]
        return found


def _cell(row: dict[str, Any], column: str, path: Path, number: int) -> str:
    if column not in row:
        columns = ", ".join(repr(c) for c in row if c is not None)
        raise CorpusError(
            f"{path}, row {number}: no column {column!r} (it has {columns}); name the right "
            "one with --text-column / --label-column"
        )
    value = row[column]
    # Text, or a whole number (a JSON label 1); 1.0 or true would be labels "1.0", "True".
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise CorpusError(
            f"{path}, row {number}: the {column!r} column holds {value!r}; write it as text "
            "(or a whole number)"
        )
    return "" if value is None else str(value).strip()
