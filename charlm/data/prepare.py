"""Books → token ids for training, validation and test: read, split, tokenize, encode, cache.

    files ──read──► texts ──split per book──► regions ──tokenizer──► uint ids ──► cache (.npy)

A second run on the same bytes with the same settings and tokenizer finds the cache entry and
memory-maps its arrays without reading or tokenizing anything.

The char tokenizer takes a fast path that never materialises more than a chunk of code points
or ids at once: its vocabulary (the distinct code points) is gathered chunk by chunk, and the
ids are appended chunk by chunk straight to the cache file. Other
tokenizers see each split's whole text, as their merges may cross any chunk boundary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charlm.corpus import Book, SplitConfig, read_book, split_regions
from charlm.corpus.download import sha256_file
from charlm.corpus.encodings import canonical_encoding
from charlm.data.cache import (
    SPLITS,
    Entry,
    TokenCache,
    cache_key,
    cache_root,
    entry_tokenizer,
    smallest_uint_dtype,
    tokenizer_key,
)
from charlm.errors import ConfigError, CorpusError
from charlm.tokenizers import Tokenizer, train_tokenizer
from charlm.tokenizers.char import CharTokenizer

_CHUNK = 1 << 20  # characters per chunk on the char fast path (4 MB of code points)
_DESCRIBED = 10  # books described one line each; more are summed up


@dataclass
class PreparedData:
    """A tokenizer and the ids of each split (None where a split is not used)."""

    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray | None
    test_ids: np.ndarray | None
    info: dict[str, Any]  # the checkpoint's data section
    cached: bool

    @property
    def val_characters(self) -> int:
        """Characters of validation text, for bits per character."""
        if self.info.get("val_file"):
            return self.info["val_file"]["characters"]
        return sum(book["val_characters"] for book in self.info["books"])

    @property
    def test_characters(self) -> int:
        """Characters of test text, for bits per character."""
        return sum(book.get("test_characters", 0) for book in self.info["books"])

    def report(self) -> list[str]:
        """Lines for the user: how each book was read (unless cached) and the split sizes."""
        lines = []
        info = self.info
        if not self.cached:
            books = [b for b in [*info["books"], info.get("val_file"), info.get("test_file")] if b]
            lines += [describe_book(book) for book in books[:_DESCRIBED]]
            if len(books) > _DESCRIBED:
                lines.append(f"... and {len(books) - _DESCRIBED} more files (see the checkpoint)")
        lines.append(_summary(info, self.cached))
        return lines


def prepare_data(
    books: Sequence[str | os.PathLike],
    *,
    tokenizer: str | Tokenizer = "char",
    tokenizer_options: dict[str, Any] | None = None,
    splits: SplitConfig | None = None,
    encoding: str | None = None,
    keep_boilerplate: bool = False,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    cached_as: dict[str, Any] | None = None,
) -> PreparedData:
    """Ids for `books` split by `splits`, with a tokenizer trained on all the text (or the
    given `tokenizer` instance), from the cache when possible.

    `cached_as`: for a `tokenizer` instance trained by an earlier run (a resumed one), the
    tokenizer name and options that run gave (its `info["cache"]["tokenizer"]`), so that the
    earlier run's cache entry is found instead of the books being encoded into a second one.
    """
    started = time.perf_counter()
    splits = splits or SplitConfig()
    if encoding is not None:
        encoding = canonical_encoding(encoding)  # fail fast, and "UTF8" keys like "utf-8"
    files = _files(books, splits)
    hashes = {role: [sha256_file(p) for p in paths] for role, paths in files.items()}
    _check_no_overlap(files, hashes)
    material = {
        "inputs": hashes,
        "splits": [*splits.tail_fractions()],
        "encoding": encoding,
        "keep_boilerplate": keep_boilerplate,
    }
    spec = tokenizer_key(tokenizer, tokenizer_options)
    cache = TokenCache(cache_root(cache_dir) if use_cache else None)
    found = None
    if cached_as is not None and isinstance(tokenizer, Tokenizer):
        key = cache_key({**material, "tokenizer": cached_as})
        if _made_by(cache.load(key), tokenizer) is not None:  # never discard another's entry
            found = cache.load_checked(key, tokenizer)
            spec = cached_as if found is not None else spec
    key = cache_key({**material, "tokenizer": spec})
    found = found or cache.load_checked(key, tokenizer)
    cached = found is not None
    if found is None:
        entry = _build(
            cache, key, files, tokenizer, tokenizer_options, splits, encoding, keep_boilerplate
        )
        entry = cache.load(key) or entry  # reopen read-only as memory maps
        found = entry, entry_tokenizer(entry, tokenizer)
    entry, tok = found
    info = _current_info(entry.meta["data"], files, splits, encoding, keep_boilerplate)
    info["cache"] = {
        "hit": cached,
        "key": key,
        "path": str(entry.path) if entry.path else None,
        "tokenizer": spec,
    }
    # The books' bytes and how they were split, whatever the tokenizer: a resumed run checks
    # that it reads what its first part read.
    info["inputs_key"] = cache_key(material)
    info["prepare_seconds"] = round(time.perf_counter() - started, 3)
    ids = {s: _ids(entry.arrays, entry.meta["data"], s) for s in SPLITS}
    return PreparedData(
        tokenizer=tok,
        train_ids=ids["train"],
        val_ids=ids["val"] if splits.has_val() else None,
        test_ids=ids["test"] if splits.has_test() else None,
        info=info,
        cached=cached,
    )


def _files(books: Sequence[str | os.PathLike], splits: SplitConfig) -> dict[str, list[Path]]:
    if not books:
        raise CorpusError("no book to train on")
    files = {
        "train": [Path(b) for b in books],
        "val": [Path(splits.val_file)] if splits.val_file else [],
        "test": [Path(splits.test_file)] if splits.test_file else [],
    }
    for path in [p for paths in files.values() for p in paths]:
        if path.is_char_device() or path.is_block_device():  # /dev/zero would never end
            raise CorpusError(f"{path} is a device, not a file; give the path of a text file")
    return files


def _check_no_overlap(files: dict[str, list[Path]], hashes: dict[str, list[str]]) -> None:
    train = dict(zip(hashes["train"], files["train"], strict=True))
    for role, name in (("val", "validation"), ("test", "test")):
        for path, digest in zip(files[role], hashes[role], strict=True):
            if digest in train:
                raise ConfigError(
                    f"the {name} file {path} has the same content as the training book "
                    f"{train[digest]}; the splits must not overlap"
                )
    if hashes["val"] and hashes["val"] == hashes["test"]:
        raise ConfigError("the validation and test files have the same content")


def _made_by(entry: Entry | None, tokenizer: Tokenizer) -> Entry | None:
    """`entry` if its ids come from exactly `tokenizer`, else None."""
    if entry is None:
        return None
    made = entry.meta.get("tokenizer", {})
    return entry if tokenizer.is_saved_as(made.get("name"), made.get("state")) else None


def _build(
    cache: TokenCache,
    key: str,
    files: dict[str, list[Path]],
    tokenizer: str | Tokenizer,
    tokenizer_options: dict[str, Any] | None,
    splits: SplitConfig,
    encoding: str | None,
    keep_boilerplate: bool,
):
    read = {
        role: [read_book(p, encoding=encoding, keep_boilerplate=keep_boilerplate) for p in paths]
        for role, paths in files.items()
    }
    pieces = _pieces(read, splits)
    all_texts = [b.text for books in read.values() for b in books]
    tok = (
        tokenizer
        if isinstance(tokenizer, Tokenizer)
        else train_tokenizer(tokenizer, "".join(all_texts), tokenizer_options)
    )
    dtype = smallest_uint_dtype(tok.vocab_size)
    with cache.writer(key) as writer:
        lengths = {s: _encode_into(writer, s, pieces[s], tok, dtype) for s in SPLITS}
        if lengths["train"] == 0:
            raise CorpusError("no training text is left after taking the validation and test text")
        data = _data_info(read, splits, lengths, dtype)
        entry = writer.finish(
            {"tokenizer": {"name": tok.name, "state": tok.get_state()}, "data": data}
        )
    return entry


def _pieces(read: dict[str, list[Book]], splits: SplitConfig) -> dict[str, list[tuple]]:
    """(text, start, end) regions of each split, in book order."""
    pieces: dict[str, list[tuple]] = {s: [] for s in SPLITS}
    for book in read["train"]:
        train_end, val_end = split_regions(len(book.text), splits)
        pieces["train"].append((book.text, 0, train_end))
        if not splits.val_file:
            pieces["val"].append((book.text, train_end, val_end))
        if not splits.test_file:
            pieces["test"].append((book.text, val_end, len(book.text)))
    for role in ("val", "test"):
        pieces[role] += [(b.text, 0, len(b.text)) for b in read[role]]
    return pieces


def _encode_into(writer, split: str, pieces: list[tuple], tok: Tokenizer, dtype) -> int:
    if isinstance(tok, CharTokenizer):
        # One id per code point, whatever the chunking: encode slice by slice.
        length = sum(end - start for _, start, end in pieces)
        sink = writer.sink(split, length, dtype)
        encode = tok.encode_array
        for text, start, end in pieces:
            for first in range(start, end, _CHUNK):
                sink.write(encode(text[first : min(end, first + _CHUNK)]))
        return length
    ids = tok.encode_array("".join(text[start:end] for text, start, end in pieces))
    writer.sink(split, len(ids), dtype).write(ids)
    return len(ids)


def _data_info(read, splits: SplitConfig, lengths, dtype) -> dict[str, Any]:
    books = []
    for book in read["train"]:
        train_end, val_end = split_regions(len(book.text), splits)
        info = book.describe()
        info.update(
            train_characters=train_end,
            val_characters=val_end - train_end,
            test_characters=len(book.text) - val_end,
        )
        books.append(info)
    return {
        "books": books,
        "val_file": read["val"][0].describe() if read["val"] else None,
        "test_file": read["test"][0].describe() if read["test"] else None,
        "characters": sum(len(b.text) for role in read.values() for b in role),
        "boilerplate_removed": sum(b.boilerplate_removed for r in read.values() for b in r),
        "train_tokens": lengths["train"],
        "val_tokens": lengths["val"],
        "test_tokens": lengths["test"],
        "token_dtype": str(dtype),
    }


def _current_info(data, files, splits, encoding, keep_boilerplate) -> dict[str, Any]:
    # The cache is keyed by content, so the entry may have been made from files elsewhere.
    info = {**data, "books": [dict(b) for b in data["books"]]}
    for book, path in zip(info["books"], files["train"], strict=True):
        book["path"] = str(path)
    for role in ("val", "test"):
        if info.get(f"{role}_file"):
            info[f"{role}_file"] = {**info[f"{role}_file"], "path": str(files[role][0])}
    info.update(
        splits=splits.to_dict(), encoding=encoding or "auto", keep_boilerplate=keep_boilerplate
    )
    return info


def _ids(arrays: dict[str, np.ndarray], data: dict[str, Any], split: str) -> np.ndarray:
    if split in arrays:
        return arrays[split]
    return np.zeros(data[f"{split}_tokens"], dtype=data["token_dtype"])


def describe_book(book: dict[str, Any]) -> str:
    """One line on how a book was read."""
    parts = [f"{book['encoding']}{' with BOM' if book.get('bom') else ''}"]
    if book.get("line_endings", "lf") != "lf":
        parts.append(f"{book['line_endings'].upper()} line endings → LF")
    if book.get("boilerplate_removed"):
        parts.append(
            f"{book['boilerplate_removed']:,} characters of Project Gutenberg boilerplate removed"
        )
    parts.append(f"{book['characters']:,} characters")
    return f"read {book['path']}: " + ", ".join(parts)


def _summary(info: dict[str, Any], cached: bool) -> str:
    # A split the run does not have is left out rather than shown as 0 tokens.
    parts = [f"train {info['train_tokens']:,}"]
    parts += [
        f"{name} {info[f'{split}_tokens']:,}"
        for split, name in (("val", "validation"), ("test", "test"))
        if info[f"{split}_tokens"]
    ]
    sizes = f"{' / '.join(parts)} tokens ({info['token_dtype']})"
    books = len(info["books"])
    what = f"{books} book{'s' if books != 1 else ''}"
    where = info["cache"]["path"]
    if cached:
        return f"cached: {what}, {sizes}, memory-mapped from {where} (no reading or tokenizing)"
    stored = f", cached in {where}" if where else ""
    return f"tokenized {what}: {sizes}{stored}"
