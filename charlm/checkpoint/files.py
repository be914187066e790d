"""A checkpoint directory is an untrusted archive: nothing in it leads charlm out of it.

Checkpoints are downloaded and shared, and whoever made one chose every name in it. Any entry
could be a symbolic link (to ~/.bashrc, to another of your models), a FIFO that blocks whoever
opens it, a device, or a hard link to a file of yours. So for every path *inside* a checkpoint
directory (the directory itself is the user's choice, reached through a link or not):

* a file is opened without following a link (O_NOFOLLOW) and without blocking (O_NONBLOCK),
  and used only when it is a regular file no larger than its limit;
* a subdirectory (`best/`) must be a real directory, never a link;
* a write creates a new file under a fresh name (O_EXCL) and renames it into place, so it
  never writes through whatever was there. The two files a run appends to, the run lock and
  the metrics log, are written only when they are regular files with a single link.

Anything else is refused with a CheckpointError that names the entry. Every read and write of
a checkpoint directory (the lock, the metrics log, `best/`, saves and loads) goes through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from charlm.errors import CheckpointError
from charlm.limits import too_large

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Where the system lets a library reopen an open file by name (Linux, macOS, BSD).
_FD_DIRECTORY = "/dev/fd" if os.path.isdir("/dev/fd") else None
_KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
    stat.S_IFSOCK: "socket",
}


def open_file(path: Path, flags: int = os.O_RDONLY, *, writing: bool = False) -> int:
    """A descriptor of `path`, which must be a regular file and not a link.

    `writing` also refuses a file with other hard links: writing to it would change a file
    elsewhere. Missing files raise FileNotFoundError as `os.open` does.
    """
    if not _NOFOLLOW:  # pragma: no cover - Windows: check first, as the open cannot
        _refuse_link(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o644)
    except OSError:
        _refuse_link(path)
        if os.path.exists(path) and not os.path.isfile(path):
            _refuse_kind(path, os.stat(path).st_mode)  # e.g. a FIFO nobody reads (ENXIO)
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            _refuse_kind(path, info.st_mode)
        if writing and info.st_nlink > 1:
            raise CheckpointError(
                f"{path} has other hard links; charlm writes only to files it created "
                "itself, so remove it"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path, limit: int) -> bytes:
    """The whole regular file `path`, refused when it holds more than `limit` bytes."""
    fd = open_file(path)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > limit:
            raise CheckpointError(too_large(str(path), size, limit))
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew while being read
        raise CheckpointError(too_large(str(path), len(data), limit))
    return data


@contextlib.contextmanager
def checked_path(path: Path) -> Iterator[str]:
    """A name for the regular file `path` that a library can open itself (safetensors maps
    weights into memory): /dev/fd/N, the very file checked here even if `path` is replaced
    meanwhile (a save committing), where the system has it; else `path`."""
    fd = open_file(path)
    try:
        yield f"{_FD_DIRECTORY}/{fd}" if _FD_DIRECTORY else str(path)
    finally:
        os.close(fd)


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a new hidden file beside `target`, then rename it over `target`.

    The new file is created here (O_EXCL), so nothing that was in the directory is written
    through; the rename replaces a link at `target` instead of following it.
    """
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them live
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_text(path: Path, text: str) -> None:
    """Append `text` to `path` (created when missing), a regular file with one link.

    A write that fails part way (a full disk, a file size limit) is taken back: the file
    ends as it did before, not with part of `text`. The OSError is raised.
    """
    fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, writing=True)
    try:
        size = os.fstat(fd).st_size
        data = text.encode("utf-8")
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            with contextlib.suppress(OSError):  # a reader skips a cut last line anyway
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def open_lock(path: Path) -> int:
    """A read-write descriptor of the lock file `path` (created when missing)."""
    return open_file(path, os.O_RDWR | os.O_CREAT, writing=True)


def subdirectory(path: Path, *, create: bool = False) -> Path:
    """`path`, a directory inside a checkpoint: a real one, never a link; made if `create`."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        if create:
            path.mkdir(parents=True)  # the directories above it are the user's choice
        return path
    if stat.S_ISLNK(mode):
        _refuse_link(path)
    if not stat.S_ISDIR(mode):
        _refuse_kind(path, mode, "a directory")
    return path


def check_entries(
    directory: Path, regular: Sequence[str] = (), directories: Sequence[str] = ()
) -> None:
    """Refuse, before any work, a link or a special file where `directory` should hold
    (if anything) the regular files `regular` and the subdirectories `directories`."""
    for name in regular:
        path = directory / name
        if os.path.lexists(path):
            _refuse_link(path)
            if not os.path.isfile(path):
                _refuse_kind(path, os.stat(path).st_mode)
    for name in directories:
        subdirectory(directory / name)


def remove_tree(path: Path) -> None:
    """Delete the subdirectory `path` and everything in it, following no link."""
    if os.path.lexists(path):
        subdirectory(path)
        shutil.rmtree(path)  # removes links inside it, never what they point to


def _refuse_link(path: Path) -> None:
    if os.path.islink(path):
        raise CheckpointError(
            f"{path} is a symbolic link; charlm follows no link inside a checkpoint directory "
            "(it could lead anywhere), so remove it"
        )


def _refuse_kind(path: Path, mode: int, expected: str = "a regular file") -> None:
    kind = _KINDS.get(stat.S_IFMT(mode), "regular file")
    raise CheckpointError(
        f"{path} is a {kind}, not {expected}; a checkpoint directory holds only the files "
        "charlm writes, so remove it"
    )
