"""What a training run is told (TrainConfig), what it reports, and whom it reports to.

`charlm.training` re-exports every name here; import them from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from charlm.errors import ConfigError
from charlm.models import RNNLM
from charlm.resume import TrainingState
from charlm.schedules import OPTIMIZERS, SCHEDULES

ITERATORS = ("sequential", "random")
PRECISIONS = ("fp32", "bf16", "fp16")
NONFINITE = ("stop", "skip")


@dataclass
class TrainConfig:
    """How to train; stored in the checkpoint beside the model config."""

    batch_size: int = 32
    seq_len: int = 100
    epochs: int = 20
    lr: float = 3e-3  # with the cosine decay: 1.43 nats/char on Tiny Shakespeare in 5 minutes
    clip: float = 1.0
    iterator: str = "sequential"
    max_steps: int | None = None
    max_time: float | None = None  # seconds of training, evaluation not counted
    seed: int = 0
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"  # decays to min_lr_ratio·lr by the end (the deadline with max_time)
    warmup: int = 0  # steps of linear warm-up
    min_lr_ratio: float = 0.1  # where cosine ends, as a fraction of lr
    plateau_factor: float = 0.5
    plateau_patience: int = 1  # evaluations without improvement before the rate drops
    patience: int | None = None  # evaluations without improvement before stopping
    eval_every: int | None = None  # steps; None = once per epoch
    log_every: int = 10  # steps between metrics-log records
    precision: str = "fp32"
    nonfinite: str = "stop"  # or "skip" the batch
    decay_factor: float = 0.5  # step schedule: the rate's factor per epoch after decay_start
    decay_start: int = 4  # step schedule: the last epoch at the full rate

    def __post_init__(self) -> None:
        choices = {
            "iterator": ITERATORS,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "precision": PRECISIONS,
            "nonfinite": NONFINITE,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; use one of {', '.join(allowed)}"
                )
        for name in ("batch_size", "seq_len", "epochs", "log_every", "plateau_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "patience", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not self.clip > 0:
            raise ConfigError(f"gradient clipping threshold must be positive, got {self.clip}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"max_time must be positive, got {self.max_time}")
        if self.warmup < 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("warmup and weight_decay must be >= 0 and momentum in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 < self.plateau_factor < 1:
            raise ConfigError("min_lr_ratio must be in [0, 1] and plateau_factor in (0, 1)")
        if not 0 < self.decay_factor <= 1 or self.decay_start < 0:
            raise ConfigError("decay_factor must be in (0, 1] and decay_start at least 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RunCounters:
    """Where a run is; part of the training state a resumed run starts from."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # batches of the current epoch already trained
    tokens_seen: int = 0
    train_seconds: float = 0.0  # wall time of the training steps (no evaluation, no saving)
    compute_seconds: float = 0.0  # inside forward, backward and the optimizer step
    skipped: int = 0  # non-finite batches skipped
    val_loss: float | None = None  # of the latest evaluation
    last_eval_step: int | None = None
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one
    early_stopped: bool = False


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
    best_val_perplexity: float | None = None


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
    # "epochs", "max_steps", "max_time", "early_stopping", "interrupted" (Ctrl-C) or
    # "terminated" (SIGTERM)
    stopped_by: str
    best_val_perplexity: float | None = None
    best_step: int | None = None
    skipped_batches: int = 0  # non-finite batches skipped with nonfinite="skip"
    compute_seconds: float = 0.0  # inside forward, backward and the optimizer step

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


class Checkpointer(Protocol):
    """Where a run saves itself: `last` (with the state to resume) and `best`."""

    def save_last(self, model: RNNLM, state: TrainingState, summary: dict[str, Any]) -> None: ...
    def save_best(self, model: RNNLM, summary: dict[str, Any]) -> None: ...


class MetricsSink(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...
