"""What a training run is told (TrainConfig), what it reports, and whom it reports to.

`charlm.training` re-exports every name here; import them from there.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, Protocol

from charlm.checkpoint import TrainingState
from charlm.errors import ConfigError
from charlm.models import RNNLM
from charlm.models.ngram import MAX_NGRAM_ORDER
from charlm.options import check_types, option
from charlm.training.schedules import OPTIMIZERS, SCHEDULES

ITERATORS = ("sequential", "random")
# The largest vocabulary the classifier recipes treat as an alphabet (names: 86 symbols) rather
# than words: pretrained by default (pretrain.py) and fine-tuned at ULMFiT's rates.
SMALL_VOCABULARY = 512
ULMFIT_DECAY_PER_LAYER = 2.6
PRECISIONS = ("fp32", "bf16", "fp16")
NONFINITE = ("stop", "skip")
# Headings of `charlm train --help` for the fields that are not about optimisation.
RUN_CONTROL, OUTPUT = "Run control", "Output"


_UNITS = {
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1),
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m', '2min', '1h', '1.5 hours' or '1h30m'."""
    total, seen, position = 0.0, set(), 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        number, unit = match.groups()
        scale = _UNITS.get(unit.lower())
        if scale is None or scale in seen or (not unit and seen):  # "1h30" is ambiguous
            break
        seen.add(scale)
        total += float(number) * scale
        position = match.end()
    if not seen or text[position:].strip():
        raise ConfigError(
            f"cannot read {text!r} as a duration; use e.g. 300, 90s, 10m, 2min, 1h or 1h30m"
        )
    if total <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """A duration as `parse_duration` reads it: 45s, 12m30s, 1h5m (to the second, or to a
    tenth of a second under ten seconds)."""
    if seconds < 10:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    whole = int(seconds + 0.5)
    hours, minutes, rest = whole // 3600, whole // 60 % 60, whole % 60
    parts = [(hours, "h"), (minutes, "m"), (rest, "s")]
    return "".join(f"{value}{unit}" for value, unit in parts if value) or "0s"


CLASS_WEIGHTS = ("none", "balanced")
FREEZES = ("none", "encoder")


@dataclass
class TrainConfig:
    """How to train; stored in the checkpoint beside the model config."""

    seq_len: int = option(100, "Tokens per sequence: how far back gradients flow.", low=1)
    batch_size: int = option(
        32, "Sequences per batch (with examples: examples).", low=1, examples=64
    )
    epochs: int = option(20, "Passes over the training text.", low=1, group=RUN_CONTROL)
    # With the cosine decay, 3e-3 reaches 1.43 nats/char on Tiny Shakespeare in 5 minutes.
    lr: float = option(
        3e-3, "Peak learning rate (try 1e-3..3e-3 for Adam, ~1 for SGD).", low=0, low_open=True
    )
    clip: float = option(
        1.0, "Largest allowed gradient norm θ: g ← min(1, θ/‖g‖)·g.", low=0, low_open=True
    )
    iterator: str = option(
        "sequential",
        "sequential: rows continue across batches and the state is carried; "
        "random: random subsequences, fresh state every batch.",
        choices=ITERATORS,
    )
    max_time: float | None = option(  # seconds of training, evaluation not counted
        None,
        "Stop after this much training time, e.g. 300, 10m, 2min, 1h30m.",
        parse=parse_duration,
        metavar="DURATION",
        shown_default="none",
        group=RUN_CONTROL,
    )
    max_steps: int | None = option(
        None,
        "Stop after this many optimizer steps.",
        low=1,
        shown_default="none",
        group=RUN_CONTROL,
    )
    seed: int = option(
        0, "Seed for weights, batch order and dropout.", low=0, high=2**32 - 1, group=RUN_CONTROL
    )
    optimizer: str = option(
        "adam",
        "adamw decouples --weight-decay from the gradient.",
        choices=OPTIMIZERS,
        classify="adamw",
    )
    momentum: float = option(0.9, "Momentum of --optimizer sgd.", low=0, high=1, high_open=True)
    weight_decay: float = option(
        0.0, "L2 penalty (adam, sgd) or decoupled decay (adamw).", low=0, classify=0.1
    )
    schedule: str = option(
        "cosine",
        "Learning rate over the run: constant; cosine decay to --min-lr-ratio; "
        "plateau: multiply by --plateau-factor when validation stalls; step: multiply by "
        "--decay-factor each epoch after --decay-start. With --max-time, cosine and step "
        "follow the clock.",
        choices=SCHEDULES,
    )
    warmup: int = option(0, "Steps of linear learning-rate warm-up.", low=0)
    min_lr_ratio: float = option(0.1, "Where cosine ends, as a fraction of --lr.", low=0, high=1)
    plateau_factor: float = option(
        0.5,
        "plateau schedule: multiply the rate by this when validation stalls.",
        low=0, high=1, low_open=True, high_open=True,
    )  # fmt: skip
    plateau_patience: int = option(
        1, "plateau schedule: evaluations without improvement before reducing.", low=1
    )
    decay_factor: float = option(
        0.5,
        "step schedule: multiply the rate by this once per epoch after --decay-start.",
        low=0, high=1, low_open=True,
    )  # fmt: skip
    decay_start: int = option(4, "step schedule: the last epoch at the full rate.", low=0)
    patience: int | None = option(
        None,
        "Stop after this many evaluations without a better validation perplexity.",
        low=1,
        shown_default="never",
        group=RUN_CONTROL,
    )
    eval_every: int | None = option(
        None,
        "Validate every N steps as well as after each epoch.",
        low=1,
        shown_default="per epoch",
        group=RUN_CONTROL,
    )
    log_every: int = option(10, "Steps between records in the metrics log.", low=1, group=OUTPUT)
    precision: str = option(
        "fp32",
        "Mixed precision: bf16 (CUDA, or a CPU with AMX or AVX-512 BF16: there LSTMs of "
        "200-512 units trained 1.4-1.9x faster) or fp16 (CUDA only, with a loss scaler).",
        choices=PRECISIONS,
    )
    nonfinite: str = option(
        "stop", "On a NaN/inf loss: stop with a message, or skip the batch.", choices=NONFINITE
    )
    # none: on the names' validation split balanced weights cost 2.8 points of accuracy for
    # +0.008 macro-F1 (docs/benchmarks.md#classifiers); --prior uniform gets the rare labels.
    class_weights: str = option(
        "none",
        "--task classify: weigh each label's examples in the loss equally (none), or by the "
        "inverse of the label's share (balanced: rare labels count as much as common ones).",
        choices=CLASS_WEIGHTS,
    )
    # None: by the vocabulary for a classifier, one rate for a language model. A classifier
    # of words learns at one rate: from a WikiText-2 LM, many of MR's sentiment words are new
    # rows, which 2.6 per layer left nearly still (MR folds 0-2: 76.3% at one rate, 71.3% at
    # 2.6; docs/benchmarks.md#classifiers). Books' models fine-tuned from one shared model
    # told passages apart best at 10 (95.1% balanced on average) and no better at 2.6 than
    # at one rate (docs/benchmarks.md#labelled-text-names-and-which-book).
    lr_decay_per_layer: float | None = option(
        None,
        "With --init-from: each layer below the head learns at the rate of the layer above "
        "divided by this (ULMFiT's discriminative rates; 1: one rate).",
        low=1,
        shown_default="a classifier: 2.6 for up to 512 distinct tokens (names), else 1; a "
        "language model: 1",
    )
    gradual_unfreeze: bool = option(
        True,
        "--task classify with --init-from: train the head alone in the first epoch, then one "
        "more layer each epoch from the top (ULMFiT).",
        negatable=True,
    )
    # encoder: the multi-headed recurrent network of Bagnall (2015, authorship): one reader
    # of all the books, an output layer per book. Which book, two shared models: 95.4% and
    # 95.1% of the benchmark's passages against 93.1% and 93.4% fine-tuning every layer;
    # balanced over every passage of the tails, 94.5% and 94.2% against 95.4% and 92.2%
    # (docs/benchmarks.md#labelled-text-names-and-which-book): steadier, not better.
    freeze: str = option(
        "none",
        "With --init-from: keep the embedding and recurrent layers as they came (encoder) and "
        "train the output layer alone, or train every layer (none).",
        choices=FREEZES,
    )
    # Which book, three shared models at --lr-decay-per-layer 10: each book's 5-gram mixed
    # in took the benchmark's passages from 94.8% to 95.4% on average, and every passage of
    # the tails from 95.1% to 96.2% balanced
    # (docs/benchmarks.md#labelled-text-names-and-which-book).
    ngram: int = option(
        0,
        "After training, also count a token n-gram model of this order on the training text, "
        "which scoring and generation then mix with the network token by token, at the "
        "weight that fits the validation text best. 0: none.",
        low=0,
        high=MAX_NGRAM_ORDER,
        group=OUTPUT,
    )
    # None: by the vocabulary (training/pretrain.py): 10 epochs for an alphabet, where it
    # is worth +1.2 points on the names; none for words or Chinese, whose LMs are slow.
    pretrain_epochs: int | None = option(
        None,
        "--task classify from scratch: first train a language model of the training examples "
        "for this many epochs (with --bidirectional a backward one too; each within a fifth of "
        "--max-time, but see --keep-lm) and start the classifier from it, as --init-from does "
        "(ULMFiT). 0: none.",
        low=0,
        shown_default="10 for up to 512 distinct tokens (names), else 0",
    )
    # A classifier and a labelled LM err differently: on the names, the pair in the same 5
    # minutes beat the classifier alone (docs/classifiers.md#its-language-model-beside-it).
    keep_lm: bool = option(
        True,
        "--task classify with pretraining: train the forward language model on the labels too, "
        "for twice the epochs and within a third of --max-time, keep it in the checkpoint, "
        "and classify with both models (the mean of their log p(label | text)).",
        negatable=True,
    )

    def __post_init__(self) -> None:
        check_types(self)
        choices = {
            "iterator": ITERATORS,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "precision": PRECISIONS,
            "nonfinite": NONFINITE,
            "class_weights": CLASS_WEIGHTS,
            "freeze": FREEZES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; use one of {', '.join(allowed)}"
                )
        for name in ("batch_size", "seq_len", "epochs", "log_every", "plateau_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        decay = self.lr_decay_per_layer
        if decay is not None and not decay >= 1:
            raise ConfigError(f"lr_decay_per_layer must be at least 1, got {decay}")
        if not 0 <= self.ngram <= MAX_NGRAM_ORDER:
            raise ConfigError(f"ngram must be from 0 to {MAX_NGRAM_ORDER}, got {self.ngram}")
        if self.pretrain_epochs is not None and self.pretrain_epochs < 0:
            raise ConfigError(f"pretrain_epochs must be at least 0, got {self.pretrain_epochs}")
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

    def decay_per_layer(self, vocab_size: int) -> float:
        """The divisor of the rate from one layer of a fine-tuned classifier to the one below:
        as given, else ULMFiT's 2.6 for an alphabet and one rate for words."""
        if self.lr_decay_per_layer is not None:
            return self.lr_decay_per_layer
        return ULMFIT_DECAY_PER_LAYER if vocab_size <= SMALL_VOCABULARY else 1.0

    def check_start(self, task: str, init_from: Any) -> None:
        """ConfigError where a new run's settings need another start than it has: pretraining
        is a classifier's own start, a frozen or slowed encoder is one --init-from gave."""
        if self.pretrain_epochs:
            if task != "classify":
                raise ConfigError("--pretrain-epochs is for --task classify")
            if init_from:
                raise ConfigError(
                    "--init-from starts the classifier from its own model: leave out "
                    "--pretrain-epochs"
                )
        if self.freeze != "none":
            if task == "classify":
                raise ConfigError(
                    "--freeze is for language models: a classifier from --init-from trains its "
                    "head alone first by --gradual-unfreeze"
                )
            if not init_from:
                raise ConfigError(
                    f"--freeze {self.freeze} keeps the layers --init-from gives: name the "
                    "model to start from with --init-from"
                )
        if task == "lm" and self.lr_decay_per_layer not in (None, 1):
            if not init_from:
                raise ConfigError(
                    "--lr-decay-per-layer slows the layers --init-from gives: name the model "
                    "to start from with --init-from"
                )
            if self.freeze != "none":
                raise ConfigError(
                    f"--freeze {self.freeze} keeps the lower layers still: leave out "
                    "--lr-decay-per-layer"
                )
        if task != "classify":
            # A classifier's own options, which a language model would take and ignore.
            given = [
                flag
                for flag, value, default in (
                    ("--class-weights", self.class_weights, "none"),
                    ("--no-gradual-unfreeze", self.gradual_unfreeze, True),
                    ("--no-keep-lm", self.keep_lm, True),
                )
                if value != default
            ]
            if given:
                raise ConfigError(f"{', '.join(given)} is for --task classify")
        if task == "classify" and self.ngram:
            raise ConfigError(
                "--ngram mixes an n-gram model into a language model of continuous text; "
                "leave it out with --task classify"
            )

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
    best_error: float | None = None  # a classifier's, at best_val
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


class Validation(NamedTuple):
    """One evaluation on the validation split: the mean loss in nats, and for a classifier
    the share of examples it labels wrongly (None for a language model)."""

    loss: float
    error: float | None = None


@dataclass
class EvalReport:
    step: int
    epoch: int
    val_loss: float
    val_perplexity: float
    best_val_perplexity: float | None = None
    val_accuracy: float | None = None  # of a classifier

    def line(self) -> str:
        """What a display says about it."""
        found = f"epoch {self.epoch} step {self.step:,}: validation perplexity "
        found += f"{self.val_perplexity:.3f}"
        if self.val_accuracy is not None:
            found += f", accuracy {self.val_accuracy:.1%}"
        return found


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
    best_val_accuracy: float | None = None  # a classifier's, which keeps its most accurate
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
