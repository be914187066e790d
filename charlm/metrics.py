"""Perplexity and bits per character, the numbers a language model is judged by, and the
JSON Lines metrics log every training run writes beside its checkpoint."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch


def perplexity(mean_cross_entropy: float) -> float:
    """exp(mean cross-entropy per token in nats); inf when the loss overflows."""
    try:
        return math.exp(mean_cross_entropy)
    except OverflowError:
        return math.inf


def bits_per_character(total_nats: float, num_characters: int) -> float:
    """Total loss in bits spread over the characters of the text (not the tokens).

    Normalising by characters lets models with different tokenizers be compared.
    """
    return total_nats / math.log(2) / max(1, num_characters)


class RunningMean:
    """A token-weighted mean of per-batch losses."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, mean_loss: float, num_tokens: int) -> None:
        self.total += mean_loss * num_tokens
        self.count += num_tokens

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan


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


class LossMeter:
    """Token-weighted training loss and mean gradient norm, summed on the device.

    Nothing is read back until asked, so a GPU is not made to wait after every step.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss = torch.zeros((), device=self.device)
        self.grad = torch.zeros((), device=self.device)
        self.tokens = self.steps = 0

    def add(self, loss: torch.Tensor, tokens: int, grad_norm: torch.Tensor) -> None:
        self.loss += loss.detach() * tokens
        self.grad += grad_norm.detach()
        self.tokens += tokens
        self.steps += 1

    def mean_loss(self) -> torch.Tensor:
        return self.loss / max(1, self.tokens)

    def mean_grad(self) -> torch.Tensor:
        return self.grad / max(1, self.steps)

    def state(self) -> list[float]:
        return [self.loss.item(), self.grad.item(), self.tokens, self.steps]

    def load(self, state: list[float]) -> None:
        loss, grad, self.tokens, self.steps = state
        self.loss.fill_(loss)
        self.grad.fill_(grad)
