"""Tables of labelled examples: .tsv, .csv and .jsonl rows → (text, label) pairs.

A tab-separated file is read without quoting (a review may hold a lone quote mark); a CSV file
with the usual quoting; a JSON Lines file one object a line. Errors name the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from charlm.errors import CorpusError

TABLE_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl"}


def table_rows(text: str, path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """The (text, label) of every row of the table `text` read from `path`; rows with an empty
    text are skipped, an empty label is an error."""
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
        if example:
            found.append((example, label))
    return found


def _csv_rows(text: str, kind: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Each row after the header as {column: value}, numbered as rows of the table (the
    header is row 1). A row with more or fewer fields than the header is an error: with a tab
    or an unquoted comma in a text, its label would be a piece of the text."""
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
    except csv.Error as exc:  # an unclosed quote, or a field past the csv module's limit
        unclosed = " (a quote opened and never closed)" if "end of data" in str(exc) else ""
        raise CorpusError(
            f"{path}, row {number + 1} (line {reader.line_num}): {exc}{unclosed}"
        ) from exc
    return rows


def _json_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}, line {number}: not a JSON object ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise CorpusError(f"{path}, line {number}: not a JSON object")
        rows.append((number, row))
    return rows


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
