"""Reading books: from a path on disk to clean text, and splitting off validation text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import ConfigError, CorpusError


@dataclass
class Book:
    """A book's text, ready to tokenize, and where it came from."""

    text: str
    path: Path
    encoding: str


def read_book(path: str | os.PathLike) -> Book:
    """The text of a book, decoded and with line endings normalised to LF."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path} is a directory; give the path of a text file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if b"\x00" in raw[:8192]:
        raise CorpusError(f"{path} looks like a binary file, not text")
    try:
        text = raw.decode("utf-8-sig")  # utf-8-sig drops a byte-order mark if there is one
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte {exc.start}); convert it to UTF-8 first"
        ) from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError(f"{path} is empty or only whitespace; there is nothing to learn from")
    return Book(text=text, path=path, encoding="utf-8")


def split_tail(text: str, fraction: float) -> tuple[str, str]:
    """(train, validation): the validation text is the last `fraction` of the characters."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction}")
    cut = len(text) - int(round(len(text) * fraction))
    return text[:cut], text[cut:]
