"""Stopping a run on request: Ctrl-C (SIGINT) or SIGTERM finish the step, save, and return.

The handler only sets a flag that the training loop reads between steps, so a checkpoint is
never written from inside a signal handler. A second Ctrl-C aborts at once, without saving.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
# How a command ends after such a stop: as the shell reports a process the signal ended.
STOP_EXIT_CODES = {reason: 128 + int(sig) for sig, reason in REASONS.items()}


class StopFlag:
    """Set from a signal handler, another thread or a callback; read by the training loop."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str = "interrupted") -> None:
        if self.reason is None:
            self.reason = reason


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to `flag` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handle(signum: int, frame: object) -> None:
        if flag.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait
        flag.request(REASONS.get(signum, "interrupted"))

    previous = {sig: signal.signal(sig, handle) for sig in REASONS}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
