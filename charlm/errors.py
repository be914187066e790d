"""Typed errors. Each message is one line that names the problem and says what to do.

The CLI turns any `CharlmError` into a one-line message and a non-zero exit; Python users
catch the specific class they care about.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CharlmError(Exception):
    """Base class of every error charlm raises on purpose."""


class CorpusError(CharlmError):
    """A book cannot be read or is unusable for training."""


class TokenizerError(CharlmError):
    """A tokenizer cannot be built, restored or found."""


class MissingTokenizerError(TokenizerError):
    """No tokenizer of the requested name is installed (e.g. a plugin package is missing)."""


class UnknownTokenError(TokenizerError, ValueError):
    """Text contains pieces the tokenizer's vocabulary does not have.

    Made by `unseen_pieces`, it also carries `summary` (what is unknown, without advice),
    `unseen` (each piece and how often it occurs, most frequent first; empty when the
    tokenizer cannot name them) and `policies` (the unknown-token policies that get past them:
    "skip", and "unk" where the tokenizer has an <unk> token), so that a caller can word the
    error for its user with `describe`: a file name for "the text", a command-line option for
    the Python keyword.
    """

    summary: str = ""
    unseen: dict[str, int] = {}
    policies: tuple[str, ...] = ("skip",)
    where: str = "the text"  # what has the pieces, as the message names it
    kind: str = ""  # what the tokenizer calls its pieces ("character", "word"), where known

    @classmethod
    def unseen_pieces(
        cls,
        summary: str,
        unseen: dict[str, int],
        policies: tuple[str, ...],
        where: str = "the text",
    ) -> UnknownTokenError:
        error = cls(f"{where} has {summary}; {advice_for(policies, PYTHON_ADVICE)}")
        error.summary, error.unseen, error.policies = summary, dict(unseen), policies
        error.where = where
        return error

    def naming(self, where: str) -> UnknownTokenError:
        """The same error about `where` (one text of many, say), or itself if it names none."""
        if not self.summary:
            return self
        return self.unseen_pieces(self.summary, self.unseen, self.policies, where)

    def describe(self, where: str, advice: str) -> str:
        """The message for text called `where` (e.g. a file name), with `advice` as how to
        name a policy: "use --unknown {policy}" gives "use --unknown skip to drop them (or
        use --unknown unk to read them as <unk>)"."""
        if not self.summary:
            return f"{where}: {self}"
        return f"{where} has {self.summary}; {self.advice(advice)}"

    def advice(self, advice: str) -> str:
        """How to get past the unknown pieces, with `advice` naming a policy as in `describe`."""
        return advice_for(self.policies, advice)


PYTHON_ADVICE = 'pass unknown="{policy}"'


def advice_for(policies: tuple[str, ...], advice: str) -> str:
    """How to get past unknown pieces, in the caller's words for a policy."""
    effects = {"skip": "to drop them", "unk": "to read them as <unk>"}
    first, *others = policies
    text = f"{advice.format(policy=first)} {effects[first]}"
    for policy in others:
        text += f" (or {advice.format(policy=policy)} {effects[policy]})"
    return text


class CheckpointError(CharlmError):
    """A checkpoint is missing, corrupt or from an incompatible version."""


class ConfigError(CharlmError, ValueError):
    """A setting has a value that cannot work."""


class DownloadError(CorpusError):
    """A catalogue book could not be downloaded, or its bytes are not the catalogued ones."""


class TrainingError(CharlmError):
    """Training cannot go on, e.g. the loss became non-finite."""


class StoppedError(TrainingError):
    """Ctrl-C or SIGTERM stopped a run at a point where it saves nothing (a classifier's
    pretraining): the command exits as a stop does (130, 143), not as a failure."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DeviceMemoryError(CharlmError):
    """The device (GPU or CPU) ran out of memory; smaller batches or a smaller model fit."""


class SamplingError(CharlmError):
    """The model's outputs cannot be sampled from (e.g. they are NaN)."""


class Terminated(BaseException):
    """SIGTERM while a command prepares or finishes a run, outside the training loop (whose
    own handler saves): like KeyboardInterrupt, not an error of charlm's, so no subclass of
    CharlmError; the command ends with exit status 143."""


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated where the process is, as Ctrl-C raises
    KeyboardInterrupt, so what was begun is undone (a new run's directory, its lock). Without
    it SIGTERM kills the process outright; inside the training loop its own handler
    (charlm/training/signals.py) takes over and saves."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
