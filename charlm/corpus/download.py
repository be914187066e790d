"""Downloading catalogue books: verified by SHA-256, written atomically, offline via a mirror.

The bytes stream into a hidden temporary file beside the target while being hashed; only when
the size and hash match the catalogue is the file renamed into place. Any failure (network,
HTTP error, short transfer, wrong hash, Ctrl-C) deletes the temporary file, so `corpora/`
never holds half a book.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charlm.errors import DownloadError

from .catalog import DEFAULT_CORPUS_DIR, Entry

MIRROR_VARIABLE = "CHARLM_CORPUS_MIRROR"
_BLOCK = 1 << 16

Progress = Callable[[int, int], None]  # (bytes done, bytes expected)


@dataclass(frozen=True)
class Fetched:
    """Where a catalogue book is, and whether this call had to download it."""

    path: Path
    downloaded: bool
    source: str


def local_path(entry: Entry, directory: str | os.PathLike = DEFAULT_CORPUS_DIR) -> Path:
    """Where `entry` lives once fetched."""
    return Path(directory) / entry.filename


def is_present(entry: Entry, directory: str | os.PathLike = DEFAULT_CORPUS_DIR) -> bool:
    """Whether the book is downloaded and complete (right size and SHA-256)."""
    path = local_path(entry, directory)
    return (
        path.is_file() and path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
    )


def source_of(entry: Entry, mirror: str | None = None) -> str:
    """The URL or local path `entry` is fetched from, honouring $CHARLM_CORPUS_MIRROR."""
    mirror = os.environ.get(MIRROR_VARIABLE) if mirror is None else mirror
    if not mirror:
        return entry.url
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{entry.filename}"
    return str(Path(mirror) / entry.filename)


def fetch(
    entry: Entry,
    directory: str | os.PathLike = DEFAULT_CORPUS_DIR,
    *,
    mirror: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Fetched:
    """Download `entry` into `directory` unless a complete copy is already there."""
    target = local_path(entry, directory)
    source = source_of(entry, mirror)
    if is_present(entry, directory):
        return Fetched(target, False, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _copy_from(source, entry, out, progress, timeout)
            out.flush()
            os.fsync(out.fileno())
        _verify(entry, source, tmp.stat().st_size, digest)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Fetched(target, True, source)


def _copy_from(
    source: str, entry: Entry, out: BinaryIO, progress: Progress | None, timeout: float
) -> str:
    if "://" not in source:
        try:
            with open(source, "rb") as src:
                return _stream(src, out, entry.size, progress)
        except FileNotFoundError as exc:
            raise DownloadError(
                f"{entry.name}: the mirror has no {source}; copy {entry.filename} there"
            ) from exc
    fail = f"could not download {entry.name} from {source}"
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else entry.size
            digest = _stream(response, out, expected, progress)
            done = out.tell()
            if length and length.isdigit() and done < int(length):
                raise DownloadError(_short(entry, source, done, int(length)))
            return digest
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{fail}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"{fail}: {exc.reason}; check the network, or set {MIRROR_VARIABLE} to a mirror"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        # A connection that drops mid-body: IncompleteRead, a reset, or a timeout.
        raise DownloadError(_short(entry, source, out.tell(), entry.size, exc)) from exc


def _short(entry: Entry, source: str, done: int, total: int, exc: object = None) -> str:
    why = f" ({exc})" if exc else ""
    return (
        f"the download of {entry.name} from {source} stopped after {done:,} of {total:,} bytes"
        f"{why}; nothing was saved, try again"
    )


def _stream(src: BinaryIO, out: BinaryIO, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    done = 0
    while block := src.read(_BLOCK):
        out.write(block)
        digest.update(block)
        done += len(block)
        if progress is not None:
            progress(done, total)
    return digest.hexdigest()


def _verify(entry: Entry, source: str, size: int, digest: str) -> None:
    if size != entry.size or digest != entry.sha256:
        raise DownloadError(
            f"{entry.name} from {source} is not the catalogued file ({size:,} bytes, SHA-256 "
            f"{digest[:12]}…; expected {entry.size:,} bytes, {entry.sha256[:12]}…); "
            "nothing was saved"
        )


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
