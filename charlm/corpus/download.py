"""Downloading catalogue books: verified by SHA-256, written atomically, offline via a mirror.

The bytes stream into a hidden temporary file beside the target while being hashed; only when
the size and hash match the catalogue is the file renamed into place. Any failure (network,
HTTP error, short transfer, wrong hash, Ctrl-C) deletes the temporary file, so `corpora/`
never holds half a book.

A mirror may be hostile or broken, so a download never takes more than it should: it stops
at the catalogued size (a larger body is refused at the first byte too many, a larger
Content-Length before any byte), fails when no byte arrives for STALL_SECONDS, and gives up
at a deadline of DEADLINE_GRACE_SECONDS plus one second per MIN_RATE bytes. A fetch killed
outright (SIGKILL, power loss) cannot delete its temporary file; the next fetch into the
directory deletes such files once they are STALE_PART_SECONDS old (a live fetch writes to
its file at least once per STALL_SECONDS).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from charlm.errors import DownloadError

from .catalog import DEFAULT_CORPUS_DIR, Entry

MIRROR_VARIABLE = "CHARLM_CORPUS_MIRROR"
_BLOCK = 1 << 16
STALL_SECONDS = 60.0
DEADLINE_GRACE_SECONDS = 120.0
MIN_RATE = 16 * 1024  # bytes a second: a 5 MB book may take 7.5 minutes
STALE_PART_SECONDS = 600.0

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
    timeout: float = STALL_SECONDS,
) -> Fetched:
    """Download `entry` into `directory` unless a complete copy is already there.

    `timeout` is the longest wait for a byte; the whole download has a deadline that grows
    with the book's size (see the module docstring).
    """
    target = local_path(entry, directory)
    mirror = os.environ.get(MIRROR_VARIABLE) if mirror is None else mirror
    source = source_of(entry, mirror)
    if is_present(entry, directory):
        return Fetched(target, False, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    deadline = time.monotonic() + DEADLINE_GRACE_SECONDS + entry.size / MIN_RATE
    try:
        # Unbuffered: every block reaches the file at once, so a live download's file is
        # never older than the stall timeout (see _remove_stale_parts).
        with os.fdopen(fd, "wb", buffering=0) as out:
            digest = _copy_from(source, entry, out, progress, timeout, deadline, mirror)
            os.fsync(out.fileno())
        _verify(entry, source, tmp.stat().st_size, digest)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Fetched(target, True, source)


def _remove_stale_parts(target: Path) -> None:
    """Delete temporary files that killed fetches of `target` left behind."""
    now = time.time()
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        with contextlib.suppress(OSError):  # another fetch may remove it first
            if now - part.lstat().st_mtime > STALE_PART_SECONDS:
                part.unlink()


def _copy_from(
    source: str,
    entry: Entry,
    out: BinaryIO,
    progress: Progress | None,
    timeout: float,
    deadline: float,
    mirror: str | None = None,
) -> str:
    if "://" not in source:
        try:
            with open(_regular_file(entry, source), "rb") as src:
                return _stream(src, out, entry, source, progress, deadline)
        except FileNotFoundError as exc:
            raise DownloadError(
                f"{entry.name}: the mirror has no {source}; copy {entry.filename} there"
            ) from exc
    fail = f"could not download {entry.name} from {source}"
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > entry.size:
                raise DownloadError(_larger(entry, source, int(length)))
            digest = _stream(response, out, entry, source, progress, deadline)
            done = out.tell()
            if length and length.isdigit() and done < int(length):
                raise DownloadError(_short(entry, source, done, int(length)))
            return digest
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{fail}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{fail}: {exc.reason}; {_network_advice(mirror)}") from exc
    except (OSError, http.client.HTTPException) as exc:
        # A connection that drops mid-body: IncompleteRead, a reset, or a timeout.
        raise DownloadError(_short(entry, source, out.tell(), entry.size, exc)) from exc


def _network_advice(mirror: str | None) -> str:
    # Advising a mirror to someone whose mirror just failed would send them in circles.
    if mirror:
        return f"check the network and the mirror {MIRROR_VARIABLE}={mirror}"
    return f"check the network, or set {MIRROR_VARIABLE} to a mirror"


def _short(entry: Entry, source: str, done: int, total: int, exc: object = None) -> str:
    why = f" ({exc})" if exc else ""
    return (
        f"the download of {entry.name} from {source} stopped after {done:,} of {total:,} bytes"
        f"{why}; nothing was saved, try again"
    )


def _stream(
    src: Any, out: BinaryIO, entry: Entry, source: str, progress: Progress | None, deadline: float
) -> str:
    """Copy `src` to `out`, hashing it, up to one byte past the catalogued size."""
    digest = hashlib.sha256()
    done = 0
    # read1 returns whatever one read brings: a server that trickles bytes cannot keep a
    # single call waiting for a whole block, past the deadline.
    read = getattr(src, "read1", src.read)
    while block := read(min(_BLOCK, entry.size + 1 - done)):
        out.write(block)
        digest.update(block)
        done += len(block)
        if done > entry.size:
            raise DownloadError(_larger(entry, source))
        if time.monotonic() > deadline:
            raise DownloadError(
                f"the download of {entry.name} from {source} was too slow ({done:,} of "
                f"{entry.size:,} bytes by the deadline); nothing was saved, try again or set "
                f"{MIRROR_VARIABLE} to a faster mirror"
            )
        if progress is not None:
            progress(done, entry.size)
    return digest.hexdigest()


def _larger(entry: Entry, source: str, size: int | None = None) -> str:
    told = f" ({size:,} bytes)" if size is not None else ""
    return (
        f"{source} sends more{told} than the catalogued {entry.size:,} bytes of {entry.name}; "
        "it is not the catalogued file, nothing was saved"
    )


def _regular_file(entry: Entry, source: str) -> str:
    """`source` on a mirror directory, refused unless it is a regular file (a FIFO would
    block, a device never end)."""
    if os.path.exists(source) and not os.path.isfile(source):
        raise DownloadError(f"{entry.name}: {source} on the mirror is not a regular file")
    return source


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
