"""The token cache: encoded corpora as memory-mapped `.npy` files, keyed by content.

    $CHARLM_CACHE (default ~/.cache/charlm)/tokens/<key>/
        meta.json        the tokenizer state and what was read (encodings, splits, sizes)
        train.npy        ids of the smallest unsigned type that holds the vocabulary
        val.npy, test.npy

The key is a hash of the input bytes, the reading and split settings and the tokenizer (its
options, the content of a tokenizer file it is built from, a plugin's package and version), so
a changed book, setting or tokenizer never meets a stale entry. An entry is built in a hidden
temporary directory and renamed into place in one step: readers see a whole entry or none.
Before an entry is used, its arrays are checked against its metadata (see data/prepare.py);
one that disagrees is deleted and built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charlm import jsontext
from charlm.corpus.download import sha256_file
from charlm.errors import CharlmError, TokenizerError
from charlm.limits import MAX_TOKENIZER_FILE_BYTES
from charlm.tokenizers import Tokenizer, get_tokenizer_class, tokenizer_from_state, tokenizer_origin

CACHE_VARIABLE = "CHARLM_CACHE"
# Part of every key: bump it when reading or encoding changes the ids a corpus gets, so that
# entries made by an older charlm are not reused.
CACHE_FORMAT = 1
META_NAME = "meta.json"
SPLITS = ("train", "val", "test")


def cache_root(directory: str | os.PathLike | None = None) -> Path:
    """The cache directory: `directory`, else $CHARLM_CACHE, else ~/.cache/charlm."""
    if directory is not None:
        return Path(directory)
    override = os.environ.get(CACHE_VARIABLE)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "charlm"


def smallest_uint_dtype(vocab_size: int) -> np.dtype:
    """uint8, uint16 or uint32: the narrowest type that holds every id below `vocab_size`."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"a vocabulary of {vocab_size} tokens does not fit in uint32")


def cache_key(material: dict[str, Any]) -> str:
    """A stable hex key for a JSON-serialisable description of the inputs and settings."""
    text = json.dumps({"format": CACHE_FORMAT, **material}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


def tokenizer_key(tokenizer: str | Tokenizer, options: dict[str, Any] | None) -> dict[str, Any]:
    """What decides the ids a tokenizer gives, for the cache key: its state or options (a
    file by its content) and where its code comes from (a plugin's package and version)."""
    if isinstance(tokenizer, Tokenizer):
        return {
            "name": tokenizer.name,
            "state": tokenizer.get_state(),
            "origin": tokenizer_origin(tokenizer.name),
        }
    return {
        "name": tokenizer,
        "options": _keyed_options(tokenizer, options or {}),
        "origin": tokenizer_origin(tokenizer),
    }


def _keyed_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        declared = get_tokenizer_class(name).options
    except TokenizerError:
        return dict(options)  # training the tokenizer reports the problem
    keyed = dict(options)
    for key, value in options.items():
        if key in declared and declared[key].file and isinstance(value, str):
            path = Path(value)
            if path.is_file() and path.stat().st_size <= MAX_TOKENIZER_FILE_BYTES:
                keyed[key] = f"sha256:{sha256_file(path)}"
    return keyed


def entry_tokenizer(entry: Entry, tokenizer: str | Tokenizer) -> Tokenizer:
    """The tokenizer of `entry`: the one given, or the one its metadata saved."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    return tokenizer_from_state(entry.meta["tokenizer"]["name"], entry.meta["tokenizer"]["state"])


def _check_entry(entry: Entry, vocab_size: int) -> None:
    data = entry.meta["data"]
    dtype = np.dtype(data["token_dtype"])
    for split in SPLITS:
        length, array = data[f"{split}_tokens"], entry.arrays.get(split)
        if array is None:  # an empty split stores no array
            if length != 0:
                raise ValueError(f"no {split} array for {length} tokens")
            continue
        if array.ndim != 1 or array.dtype != dtype or len(array) != length:
            raise ValueError(f"the {split} array does not match the metadata")
        if length and int(array.max()) >= vocab_size:
            raise ValueError(f"the {split} array holds ids past the vocabulary")


@dataclass
class Entry:
    """A cache entry's metadata and its id arrays (memory maps when read from disk)."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None


class TokenCache:
    """Entries under `<root>/tokens`; `root=None` keeps everything in memory, caching nothing."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.directory = None if root is None else Path(root) / "tokens"

    def load(self, key: str) -> Entry | None:
        """The entry for `key`, memory-mapped; None when absent or unreadable."""
        if self.directory is None:
            return None
        path = self.directory / key
        try:
            meta = json.loads((path / META_NAME).read_text(encoding="utf-8"))
            arrays = {
                name: np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                for name in meta["arrays"]
            }
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Entry(meta, arrays, path)

    def load_checked(self, key: str, tokenizer: str | Tokenizer) -> tuple | None:
        """The entry for `key` and its tokenizer, when the entry agrees with its metadata.

        A damaged or tampered entry (an array shorter than recorded, of another type, holding
        ids past the vocabulary) is deleted, to be built again.
        """
        entry = self.load(key)
        if entry is None:
            return None
        try:
            tok = entry_tokenizer(entry, tokenizer)
            _check_entry(entry, tok.vocab_size)
        except (CharlmError, KeyError, TypeError, ValueError, AttributeError):
            self.discard(key)
            return None
        return entry, tok

    def discard(self, key: str) -> None:
        """Delete the entry for `key` (a damaged one, to be built again)."""
        if self.directory is not None:
            shutil.rmtree(self.directory / key, ignore_errors=True)

    @contextmanager
    def writer(self, key: str) -> Iterator[EntryWriter]:
        """Build an entry; it becomes visible only if the block finishes without error."""
        if self.directory is None:
            yield EntryWriter(None)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{key}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        writer = EntryWriter(tmp)
        try:
            yield writer
            self._publish(tmp, self.directory / key)
        finally:
            writer.release()
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path, final: Path) -> None:
        try:
            os.rename(tmp, final)
        except OSError:
            # Another run finished the same entry first, or a broken one is in the way.
            if self.load(final.name) is None:
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)


class EntryWriter:
    """Hands out id sinks to fill (files when caching) and records the metadata."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.sinks: dict[str, IdSink] = {}
        self.meta: dict[str, Any] = {}

    def sink(self, name: str, length: int, dtype: np.dtype) -> IdSink:
        """Somewhere to write exactly `length` ids of `dtype`, in order."""
        path = None if self.directory is None or length == 0 else self.directory / f"{name}.npy"
        self.sinks[name] = IdSink(path, length, np.dtype(dtype))
        return self.sinks[name]

    def finish(self, meta: dict[str, Any]) -> Entry:
        """Close the arrays and write the metadata; the entry is published on leaving `with`."""
        closed = {name: sink.close() for name, sink in self.sinks.items()}
        arrays = {name: array for name, array in closed.items() if array is not None}
        stored = [name for name, sink in self.sinks.items() if sink.path is not None]
        self.meta = {**meta, "arrays": stored}
        if self.directory is not None:
            text = jsontext.dumps(self.meta, indent=1)
            (self.directory / META_NAME).write_text(text, encoding="utf-8")
        return Entry(self.meta, arrays, self.directory)

    def release(self) -> None:
        """Close any file still open (after an error); harmless after `finish`."""
        for sink in self.sinks.values():
            sink.release()


class IdSink:
    """Ids written block by block into an .npy file, or into an array in memory.

    Plain file writes rather than a writable memory map: the written pages then belong to
    the page cache, not to this process, so a 100 MB corpus does not add 100 MB to its RSS.
    """

    def __init__(self, path: Path | None, length: int, dtype: np.dtype) -> None:
        self.path, self.length, self.dtype = path, length, dtype
        self.done = 0
        self._array = np.empty(length, dtype=dtype) if path is None else None
        self._file = None
        if path is not None:
            self._file = open(path, "wb")  # closed in close(); the temporary dir goes on error
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (length,),
            }
            np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, ids: np.ndarray) -> None:
        """Append `ids` (any integer array whose values fit the sink's dtype)."""
        if self.done + len(ids) > self.length:
            raise ValueError(f"more than the {self.length} ids announced")
        if self._file is not None:
            self._file.write(np.asarray(ids, dtype=self.dtype).tobytes())
        else:
            self._array[self.done : self.done + len(ids)] = ids
        self.done += len(ids)

    def close(self) -> np.ndarray | None:
        """Finish; the array itself when in memory, None when it went to a file."""
        if self.done != self.length:
            raise ValueError(f"{self.done} ids written, {self.length} announced")
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self._array

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
