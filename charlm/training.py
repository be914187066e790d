"""The training loop: truncated backprop through time, gradient clipping, perplexity.

    for each epoch:
        state = zeros
        for X, Y in batches:
            state = zeros (random iterator) or detach(state) (sequential iterator)
            logits, state = model(X, state)
            loss = cross_entropy(logits, Y); loss.backward()
            clip gradients to norm θ; optimizer step

The loop reports progress through a `Reporter`, so it prints nothing itself; the CLI plugs
in a Rich display, Python users a reporter of their own or none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from charlm.data import (
    Batch,
    batches_per_epoch,
    evaluation_batches,
    random_batches,
    sequential_batches,
)
from charlm.errors import CharlmError, ConfigError
from charlm.metrics import perplexity
from charlm.models import RNNLM, detach_state

ITERATORS = ("sequential", "random")


@dataclass
class TrainConfig:
    """How to train; stored in the checkpoint beside the model config."""

    batch_size: int = 32
    seq_len: int = 100
    epochs: int = 20
    lr: float = 2e-3
    clip: float = 1.0
    iterator: str = "sequential"
    max_steps: int | None = None
    max_time: float | None = None  # seconds of training, evaluation not counted
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterator not in ITERATORS:
            raise ConfigError(f"unknown iterator {self.iterator!r}; use sequential or random")
        for name in ("batch_size", "seq_len", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not self.clip > 0:
            raise ConfigError(f"gradient clipping threshold must be positive, got {self.clip}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"max_time must be positive, got {self.max_time}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class StepReport:
    step: int
    epoch: int
    train_loss: float
    train_perplexity: float
    tokens_per_s: float
    elapsed_s: float
    fraction_done: float  # of whichever bound (epochs, steps, time) ends the run first


@dataclass
class EvalReport:
    step: int
    epoch: int
    val_loss: float
    val_perplexity: float


@dataclass
class TrainResult:
    """What a finished run achieved; `val_*` are None when there was no validation text."""

    steps: int
    epochs: float
    tokens_seen: int
    train_seconds: float
    train_loss: float
    train_perplexity: float
    val_loss: float | None
    val_perplexity: float | None
    stopped_by: str  # "epochs", "max_steps", "max_time" or "interrupted" (Ctrl-C)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reporter(Protocol):
    def message(self, text: str) -> None: ...
    def on_step(self, report: StepReport) -> None: ...
    def on_eval(self, report: EvalReport) -> None: ...


class SilentReporter:
    def message(self, text: str) -> None:
        pass

    def on_step(self, report: StepReport) -> None:
        pass

    def on_eval(self, report: EvalReport) -> None:
        pass


@torch.inference_mode()
def evaluate(
    model: RNNLM, ids: np.ndarray, *, batch_size: int, seq_len: int, device: torch.device
) -> float:
    """Mean cross-entropy (nats per token) over all of `ids`, state carried across chunks."""
    was_training = model.training
    model.eval()
    state = None
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y in evaluation_batches(ids, batch_size, seq_len):
        x, y = x.to(device), y.to(device)
        logits, state = model(x, state)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").double()
        count += y.numel()
    model.train(was_training)
    return total.item() / count


def train(
    model: RNNLM,
    train_ids: np.ndarray,
    val_ids: np.ndarray | None,
    config: TrainConfig,
    *,
    device: torch.device,
    reporter: Reporter | None = None,
    report_interval_s: float = 0.25,
) -> TrainResult:
    """Train `model` in place until the first of epochs, max_steps or max_time runs out.

    Ctrl-C ends the run early but normally: the model is still evaluated and returned.
    The reporter hears at most one step report per `report_interval_s` (0: every step).
    """
    reporter = reporter or SilentReporter()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    clock = _Clock(config, len(train_ids), device, report_interval_s)
    try:
        for epoch in range(1, config.epochs + 1):
            clock.start_epoch(epoch)
            state = None
            for x, y in _epoch_batches(train_ids, config, epoch):
                started = time.perf_counter()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if config.iterator == "sequential" and state is not None:
                    # Keep the values so each row continues its stream; drop the graph so the
                    # backward pass stops here instead of running back to the start of the epoch.
                    state = detach_state(state)
                else:
                    state = None  # random batches are unrelated to the last: start from zeros
                loss, state = _train_step(model, optimizer, x, y, state, config.clip)
                clock.end_step(loss.detach(), y.numel(), time.perf_counter() - started)
                clock.maybe_report(reporter)
                if clock.stopped_by:
                    break
            if clock.stopped_by:
                break
            if val_ids is not None and epoch < config.epochs:
                _evaluate_and_report(model, val_ids, config, device, reporter, clock)
    except KeyboardInterrupt:
        clock.stopped_by = "interrupted"
        reporter.message("interrupted: finishing with an evaluation and a save")

    train_loss = clock.epoch_mean_loss()
    val_loss = None
    if val_ids is not None:
        val_loss = _evaluate_and_report(model, val_ids, config, device, reporter, clock)
    return TrainResult(
        steps=clock.step,
        epochs=round(clock.step / max(1, clock.steps_per_epoch), 3),
        tokens_seen=clock.tokens_seen,
        train_seconds=clock.train_seconds,
        train_loss=train_loss,
        train_perplexity=perplexity(train_loss),
        val_loss=val_loss,
        val_perplexity=None if val_loss is None else perplexity(val_loss),
        stopped_by=clock.stopped_by or "epochs",
    )


class _Clock:
    """Counts steps, tokens and training time; knows when a bound is reached and when to report.

    Losses are summed on the device and read back only when reporting, so a GPU is not made
    to wait for the CPU after every step.
    """

    def __init__(
        self, config: TrainConfig, num_tokens: int, device: torch.device, interval_s: float = 0.25
    ):
        self.config = config
        self.device = device
        self.interval_s = interval_s
        self.steps_per_epoch = batches_per_epoch(num_tokens, config.batch_size, config.seq_len)
        self.planned_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.planned_steps = min(self.planned_steps, config.max_steps)
        self.step = self.tokens_seen = self.epoch = 0
        self.train_seconds = 0.0
        self.stopped_by: str | None = None
        self._reported = (time.perf_counter(), 0, 0.0)  # wall time, tokens, train seconds
        self.start_epoch(0)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_loss = torch.zeros((), device=self.device)
        self._epoch_tokens = 0

    def end_step(self, loss: torch.Tensor, num_tokens: int, seconds: float) -> None:
        self.step += 1
        self.tokens_seen += num_tokens
        self.train_seconds += seconds
        self._epoch_loss += loss * num_tokens
        self._epoch_tokens += num_tokens
        config = self.config
        if config.max_steps is not None and self.step >= config.max_steps:
            self.stopped_by = "max_steps"
        elif config.max_time is not None and self.train_seconds >= config.max_time:
            self.stopped_by = "max_time"

    def epoch_mean_loss(self) -> float:
        mean = self._epoch_loss.item() / max(1, self._epoch_tokens)
        if not math.isfinite(mean):
            raise CharlmError(
                f"the training loss became non-finite by step {self.step}; "
                "lower --lr or --clip and train again"
            )
        return mean

    def fraction_done(self) -> float:
        fraction = self.step / max(1, self.planned_steps)
        if self.config.max_time is not None:
            fraction = max(fraction, self.train_seconds / self.config.max_time)
        return min(1.0, fraction)

    def maybe_report(self, reporter: Reporter) -> None:
        now = time.perf_counter()
        last_time, last_tokens, last_seconds = self._reported
        if not self.stopped_by and now - last_time < self.interval_s:
            return
        mean_loss = self.epoch_mean_loss()
        rate = (self.tokens_seen - last_tokens) / max(1e-9, self.train_seconds - last_seconds)
        reporter.on_step(
            StepReport(
                step=self.step,
                epoch=self.epoch,
                train_loss=mean_loss,
                train_perplexity=perplexity(mean_loss),
                tokens_per_s=rate,
                elapsed_s=self.train_seconds,
                fraction_done=self.fraction_done(),
            )
        )
        self._reported = (now, self.tokens_seen, self.train_seconds)


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    state: Any,
    clip: float,
) -> tuple[torch.Tensor, Any]:
    logits, state = model(x, state)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # g ← min(1, θ/‖g‖)·g over all parameters together: an exploding gradient keeps its
    # direction but cannot take a step larger than θ.
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss, state


def _epoch_batches(ids: np.ndarray, config: TrainConfig, epoch: int) -> Iterator[Batch]:
    make = sequential_batches if config.iterator == "sequential" else random_batches
    # A different, reproducible offset (and order) each epoch.
    return make(ids, config.batch_size, config.seq_len, seed=config.seed * 100_003 + epoch)


def _evaluate_and_report(
    model: RNNLM,
    val_ids: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    reporter: Reporter,
    clock: _Clock,
) -> float:
    val_loss = evaluate(
        model, val_ids, batch_size=config.batch_size, seq_len=config.seq_len, device=device
    )
    reporter.on_eval(EvalReport(clock.step, clock.epoch, val_loss, perplexity(val_loss)))
    return val_loss
