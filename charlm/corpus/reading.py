"""Reading one book: a path on disk to clean text, with a record of what was done to it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from charlm.errors import CorpusError

from .encodings import TEXT_SAMPLE, control_share, decode, looks_like_text
from .gutenberg import strip_boilerplate


@dataclass
class Book:
    """A book's text, ready to tokenize, and where it came from."""

    text: str
    path: Path
    encoding: str
    bom: bool = False
    line_endings: str = "lf"  # "lf", "crlf", "cr" or "mixed" as found in the file
    boilerplate_removed: int = 0  # characters of Project Gutenberg header and footer

    def describe(self) -> dict[str, Any]:
        """Everything but the text, JSON-ready, for the checkpoint and the cache."""
        info = asdict(self)
        del info["text"]
        info["path"] = str(self.path)
        info["characters"] = len(self.text)
        return info


def read_book(
    path: str | os.PathLike, *, encoding: str | None = None, keep_boilerplate: bool = False
) -> Book:
    """The text of a book: decoded (detected unless `encoding` is given), line endings
    normalised to LF, and Project Gutenberg boilerplate removed unless `keep_boilerplate`."""
    path = Path(path)
    return book_from_bytes(read_bytes(path), path, encoding, keep_boilerplate)


def book_from_bytes(
    raw: bytes, path: Path, encoding: str | None = None, keep_boilerplate: bool = False
) -> Book:
    """`read_book` for bytes read elsewhere (standard input); `path` names them in errors."""
    decoded = decode(raw, str(path), encoding)
    # Drop each intermediate as soon as it is replaced: a 100 MB book should not sit in
    # memory three times over.
    del raw
    text, found_encoding, bom = decoded.text, decoded.encoding, decoded.bom
    del decoded
    line_endings = newline_style(text)
    if line_endings != "lf":
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = text.replace("\r", "\n")
    if not text or text.isspace():  # isspace, unlike strip, copies nothing
        raise CorpusError(f"{path} is empty or only whitespace: there is no text in it")
    if not looks_like_text(text):
        raise CorpusError(_not_text(path, text, found_encoding))
    removed = 0
    if not keep_boilerplate:
        stripped = strip_boilerplate(text)
        removed = len(text) - len(stripped)
        if not stripped or stripped.isspace():
            raise CorpusError(
                f"{path} holds only Project Gutenberg boilerplate; use --keep-boilerplate to "
                "train on it anyway"
            )
        text = stripped
    return Book(text, path, found_encoding, bom, line_endings, removed)


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`, with one-line errors for the usual mistakes."""
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path} is a directory; give the path of a text file")
    if path.is_char_device() or path.is_block_device():  # /dev/zero would never end
        raise CorpusError(f"{path} is a device, not a file; give the path of a text file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def newline_style(text: str) -> str:
    """Which line endings `text` uses: "lf", "crlf", "cr" or "mixed"."""
    if "\r" not in text:
        return "lf"
    crlf = text.count("\r\n")
    bare_cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    return "crlf" if not (bare_cr or lf) else "cr" if not (crlf or lf) else "mixed"


def _not_text(path: Path, text: str, encoding: str) -> str:
    share = control_share(text)  # counted again: only on the way to this error
    # Controls from U+0080-U+009F alone: the bytes Windows-1252 uses for quotes and dashes,
    # read as Latin-1 (a binary file has the others, U+0000-U+001F, as well).
    head = text[:TEXT_SAMPLE]
    windows = (
        encoding == "iso8859-1"
        and any("\x80" <= c <= "\x9f" for c in head)
        and not any(c < " " and c not in "\n\r\t\f\v" for c in head)
    )
    hint = "; it is likely cp1252 (--encoding cp1252)" if windows else ""
    return (
        f"{path} decodes as {encoding} to {share:.1%} control characters; it is not text, or "
        f"give the right --encoding{hint}"
    )
