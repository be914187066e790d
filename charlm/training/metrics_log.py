"""The JSON Lines metrics log every training run writes beside its checkpoint."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from charlm.checkpoint import files, write_failure_reason
from charlm.errors import CheckpointError
from charlm.limits import MAX_METRICS_LOG_BYTES

METRICS_LOG_NAME = "metrics.jsonl"


class MetricsLog:
    """A run's JSON Lines log: one object per line, flushed as it is written.

    Training records carry `step`, `epoch`, `lr`, `train_loss`, `train_perplexity`,
    `grad_norm`, `tokens_per_s` and `elapsed_s`; evaluation records carry `step`, `epoch`,
    `elapsed_s`, `val_loss`, `val_perplexity` and `val_bpc`.

    The log lives in a checkpoint directory, so it is written as files.py says: the run
    starts it as a new file of its own, then appends only to a regular file with one link.

    `held`: a new run keeps its records in memory until `commit()` (its first checkpoint is
    saved), so a run that fails before then leaves the old run's log as it was.

    A write that fails (a full disk, a file size limit) raises a one-line CheckpointError
    naming the log, the reason and what is intact. No log write touches the checkpoint, and
    none leaves part of a record behind: an append that fails is taken back, a rewrite goes
    to a new file renamed into place.
    """

    def __init__(
        self, path: str | os.PathLike, *, resume_step: int | None = None, held: bool = False
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._held: list[str] | None = [] if held and resume_step is None else None
        if self._held is not None:
            return
        kept = []
        if resume_step is not None and os.path.lexists(self.path):
            # Records after the step the run resumes from describe work that was lost
            # (the run was killed after them); the resumed run writes those steps again.
            raw = files.read_bytes(self.path, MAX_METRICS_LOG_BYTES)
            records = _records(raw)
            kept = [r for r in records if _step(r) <= resume_step]
            if len(kept) == len(records) and (not raw or raw.endswith(b"\n")):
                return  # nothing to drop, no torn line: the log is appended to as it is
        try:
            self._replace("".join(_line(r) for r in kept))
        except OSError as exc:
            raise self._failure(
                exc, "rewrite", "the log and the checkpoint there are as they were"
            ) from exc

    def write(self, record: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(_line(record))
            return
        try:
            files.append_text(self.path, _line(record))
        except OSError as exc:
            intact = "its earlier records and the last checkpoint saved there are intact"
            raise self._failure(exc, "add a record to", intact) from exc

    @property
    def held(self) -> bool:
        """Whether records are still held in memory, waiting for `commit()`."""
        return self._held is not None

    def commit(self) -> None:
        """Replace the file with the records held so far; append from now on."""
        if self._held is None:
            return
        try:
            self._replace("".join(self._held))
        except OSError as exc:
            # The run's first checkpoint is saved and an old run's `best` is gone: an old
            # log (--overwrite) describes a model no longer there, and a resume would keep
            # its records as this run's. So it goes too, if it can.
            try:
                self.path.unlink(missing_ok=True)  # a link is removed, not what it points to
                old = ""
            except OSError:
                old = " (the log still holds the earlier run's records)"
            intact = "the checkpoint just saved there is intact, but this run's records up to "
            intact += f"it are lost{old}"
            raise self._failure(exc, "write", intact) from exc
        self._held = None

    def _replace(self, text: str) -> None:
        files.write_atomically(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _failure(self, exc: OSError, doing: str, intact: str) -> CheckpointError:
        """One line, in a failed save's words (charlm/checkpoint): the reason ("no space left
        on device", "File too large"), the log, and what is `intact`."""
        reason = write_failure_reason(exc)
        return CheckpointError(f"{reason}: could not {doing} the metrics log {self.path}; {intact}")


def _step(record: dict[str, Any]) -> float:
    step = record.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else math.inf


def _line(record: dict[str, Any]) -> str:
    # JSON has no infinity or NaN: a diverged value is written as null.
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return json.dumps(clean, ensure_ascii=False) + "\n"


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics log; a torn last line (the process was killed) is skipped."""
    return _records(files.read_bytes(Path(path), MAX_METRICS_LOG_BYTES))


def _records(raw: bytes) -> list[dict[str, Any]]:
    records = []
    # Bytes that are not UTF-8 (a damaged or foreign file) spoil only their own lines.
    text = raw.decode("utf-8", "replace")
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
