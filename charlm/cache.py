"""The token cache: encoded corpora as memory-mapped `.npy` files, keyed by content.

    $CHARLM_CACHE (default ~/.cache/charlm)/tokens/<key>/
        meta.json        the tokenizer state and what was read (encodings, splits, sizes)
        train.npy        ids of the smallest unsigned type that holds the vocabulary
        val.npy, test.npy

The key is a hash of the input bytes, the reading and split settings and the tokenizer, so a
changed book, setting or tokenizer never meets a stale entry. An entry is built in a hidden
temporary directory and renamed into place in one step: readers see a whole entry or none.
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

CACHE_VARIABLE = "CHARLM_CACHE"
# Part of every key: bump it when reading or encoding changes the ids a corpus gets, so that
# entries made by an older charlm are not reused.
CACHE_FORMAT = 1
META_NAME = "meta.json"


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

    @contextmanager
    def writer(self, key: str) -> Iterator[EntryWriter]:
        """Build an entry; it becomes visible only if the block finishes without error."""
        if self.directory is None:
            yield EntryWriter(None)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{key}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        try:
            yield EntryWriter(tmp)
            self._publish(tmp, self.directory / key)
        finally:
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
    """Hands out arrays to fill (on disk when caching) and records the metadata."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.arrays: dict[str, np.ndarray] = {}
        self.meta: dict[str, Any] = {}

    def array(self, name: str, length: int, dtype: np.dtype) -> np.ndarray:
        """A writable 1-D array of `length` ids, mapped straight onto its cache file."""
        if self.directory is None or length == 0:  # an empty file cannot be memory-mapped
            array = np.empty(length, dtype=dtype)
        else:
            array = np.lib.format.open_memmap(
                self.directory / f"{name}.npy", mode="w+", dtype=dtype, shape=(length,)
            )
        self.arrays[name] = array
        return array

    def finish(self, meta: dict[str, Any]) -> Entry:
        """Flush the arrays and write the metadata; the entry is published on leaving `with`."""
        stored = []
        for name, array in self.arrays.items():
            if isinstance(array, np.memmap):
                array.flush()
                stored.append(name)
        self.meta = {**meta, "arrays": stored}
        if self.directory is not None:
            text = json.dumps(self.meta, indent=1, ensure_ascii=False)
            (self.directory / META_NAME).write_text(text, encoding="utf-8")
        return Entry(self.meta, self.arrays, self.directory)
