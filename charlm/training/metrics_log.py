"""The JSON Lines metrics log every training run writes beside its checkpoint."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_LOG_NAME = "metrics.jsonl"


class MetricsLog:
    """A run's JSON Lines log: one object per line, flushed as it is written.

    Training records carry `step`, `epoch`, `lr`, `train_loss`, `train_perplexity`,
    `grad_norm`, `tokens_per_s` and `elapsed_s`; evaluation records carry `step`, `epoch`,
    `elapsed_s`, `val_loss`, `val_perplexity` and `val_bpc`.
    """

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")  # a new run starts a new log
        elif self.path.exists():
            # Records after the step the run resumes from describe work that was lost
            # (the run was killed after them); the resumed run writes those steps again.
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(_line(r) for r in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(_line(record))


def _line(record: dict[str, Any]) -> str:
    # JSON has no infinity or NaN: a diverged value is written as null.
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return json.dumps(clean, ensure_ascii=False) + "\n"


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics log; a torn last line (the process was killed) is skipped."""
    records = []
    # Bytes that are not UTF-8 (a damaged or foreign file) spoil only their own lines.
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
