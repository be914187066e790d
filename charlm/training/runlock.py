"""One training run per checkpoint directory: a lock held for the whole run.

`charlm train` holds an exclusive `flock` on `<out>/.train.lock` from start to end. A second
run pointed at the same directory, or at a folder inside it (a live run writes its `best`
there), finds it held and stops at once with a message naming the process that holds it. The
kernel drops the lock when its holder exits, however it exits (even SIGKILL), so a killed run
never blocks the next one; the file itself stays behind, empty of meaning. The lock file is
opened as every file of a checkpoint directory is (charlm/checkpoint/files.py): a link or a
FIFO in its place is refused, never written through.

Apart from live runs, a directory that already holds a finished or stopped run is only
written to by a run that says what it wants: `resume` (continue it) or `overwrite`
(replace it). Without `fcntl` (Windows) the lock is skipped; the second rule still holds.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from charlm.checkpoint import files
from charlm.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".train.lock"


class RunLockedError(ConfigError):
    """Another live run is writing to the same checkpoint directory."""


@contextlib.contextmanager
def claim_directory(
    out: Path, *, config_name: str, resume: bool = False, overwrite: bool = False
) -> Iterator[None]:
    """Hold `out` for one run: locked against other runs, and not silently reused."""
    created = not out.exists()
    _refuse_inside_a_live_run(out)
    with _locked(out):
        if (out / config_name).is_file() and not (resume or overwrite):
            # Said for both callers: the command line and train_book's arguments.
            raise ConfigError(
                f"{out} already holds a trained model; continue it with --resume {out}, "
                "replace it with --overwrite, or choose another --out (in Python: resume=, "
                "overwrite=True, out=)"
            )
        try:
            yield
        except BaseException:
            if created:
                _remove_if_only_lock(out)
            raise


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{out} is a file; --out needs a directory") from None
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    fd = files.open_lock(out / LOCK_NAME)
    try:
        holder = _holder_if_held(fd)
        if holder is not None:
            raise RunLockedError(
                f"{out} is in use by another charlm train ({holder}); wait for it to finish "
                "or choose another --out"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _refuse_inside_a_live_run(out: Path) -> None:
    """A live run writes below its directory too (its `best`): a run into a folder there would
    have its checkpoint replaced by the other's next save. Each enclosing directory with a
    lock file is tried without waiting, and let go at once when no run holds it."""
    if fcntl is None:  # pragma: no cover - not POSIX
        return
    for parent in Path(os.path.abspath(out)).parents:
        if not (parent / LOCK_NAME).is_file():
            continue
        fd = files.open_lock(parent / LOCK_NAME)
        try:
            holder = _holder_if_held(fd)
        finally:
            os.close(fd)  # lets go of the lock if it was free
        if holder is not None:
            raise RunLockedError(
                f"{out} is inside {parent}, which another charlm train is writing ({holder}); "
                "choose an --out outside it"
            )


def _holder_if_held(fd: int) -> str | None:
    """Take the lock on `fd` without waiting; if another process holds it, the line it wrote
    about itself ("pid 1234 on host") and the lock is not taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
    return None


def _remove_if_only_lock(out: Path) -> None:
    """A run that failed before writing anything leaves no directory behind."""
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink()
            out.rmdir()
