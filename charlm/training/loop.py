"""The training loop: truncated backprop through time, gradient clipping, perplexity.

    for each epoch:
        state = zeros
        for X, Y in batches:
            state = zeros (random iterator) or detach(state) (sequential iterator)
            lr = schedule(step, progress, epoch)
            loss = mean of −log p(Y | X, state); loss.backward()
            clip gradients to norm θ; optimizer step
            every log_every steps: a metrics record; every eval_every steps and each epoch:
            validate, keep `best`, save `last`, maybe reduce the rate or stop early

The batches come from a feed (feeds.py): the sequential or random iterator over continuous
text, or examples one per row, each from its own start (state zeros, padding masked out).
The loop reports progress through a `Reporter` and saves through a `Checkpointer`, so it
prints and writes nothing itself. Ctrl-C or SIGTERM finish the current step, save `last` with
everything needed to resume exactly, and return.
"""

from __future__ import annotations

import gc
import itertools
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from charlm.checkpoint import TrainingState
from charlm.data import ExampleIds
from charlm.device import cpu_has_bf16_lstm, mixed_precision
from charlm.errors import CheckpointError, ConfigError, TrainingError
from charlm.metrics import perplexity
from charlm.models import RNNLM, is_classifier, num_parameters
from charlm.training.allocator import keep_freed_memory, tuning_for
from charlm.training.config import (
    Checkpointer,
    MetricsSink,
    Reporter,
    RunCounters,
    SilentReporter,
    TrainConfig,
    TrainResult,
    Validation,
    format_duration,
)
from charlm.training.distributed import DistContext
from charlm.training.feeds import (
    ClassifierFeed,
    ExampleFeed,
    StreamFeed,
    evaluate,
    evaluate_example_ids,
)
from charlm.training.recorder import Recorder, nonfinite_message
from charlm.training.resume import (
    TRAINING_STATE_VERSION,
    load_optimizer_state,
    optimizer_state,
    restore_hidden,
    restore_rng,
    rng_tensors,
    state_tensors,
)
from charlm.training.schedules import (
    LRSchedule,
    build_optimizer,
    clip_gradients,
    discriminative_groups,
    set_lr,
)
from charlm.training.signals import StopFlag, stop_on_signals
from charlm.training.state_checks import check_training_state

__all__ = ["evaluate", "evaluate_example_ids", "train"]

STOP_CODES = ("", "max_steps", "max_time", "interrupted", "terminated")
# A run that ends at its epochs, still improving, before this share of --max-time says
# how to use the rest.
UNUSED_TIME_NOTED = 0.8
# A run in fp32 on a CPU with bfloat16 instructions that trained this long, with layers this
# wide, hears of bf16. Narrower layers gain nothing: on a 2-core Xeon with AMX a 1 x 64 LSTM
# trained at 0.84x its fp32 speed in bf16, config (a)'s 2 x 256 at 1.58x (docs/benchmarks.md).
BF16_NOTED_AFTER_S = 60.0
BF16_NOTED_FROM_HIDDEN = 128


def train(
    model: RNNLM,
    train_ids: np.ndarray | ExampleIds,
    val_ids: np.ndarray | ExampleIds | None,
    config: TrainConfig,
    *,
    device: torch.device,
    reporter: Reporter | None = None,
    checkpointer: Checkpointer | None = None,
    metrics: MetricsSink | None = None,
    resume: TrainingState | None = None,
    stop: StopFlag | None = None,
    val_characters: int | None = None,
    dist: DistContext | None = None,
    report_interval_s: float = 0.25,
    fine_tune: bool = False,
) -> TrainResult:
    """Train `model` in place until epochs, max_steps, max_time, early stopping or a stop.

    `train_ids` is one id array of continuous text, or `ExampleIds` (then `val_ids` too):
    examples read one per row from their own start (the model needs its end token).
    `resume` continues a run from the state a checkpointer saved; `stop` lets other code
    end the run as Ctrl-C does; `val_characters` (the validation text's length) turns the
    validation loss into bits per character. The reporter hears at most one step report
    per `report_interval_s` (0: every step). `fine_tune` (a classifier started from a
    language model) turns on the ULMFiT recipe: discriminative rates, gradual unfreezing.
    `config.freeze == "encoder"` leaves the model with its output layer alone requiring
    gradients.
    """
    if device.type == "cpu":  # each step reuses its big buffers' pages (training/allocator.py)
        logits = 4 * config.batch_size * config.seq_len * model.config.vocab_size
        keep_freed_memory(tuning_for(logits))
    run = _Run(
        model, train_ids, val_ids, config, device, reporter or SilentReporter(), checkpointer,
        metrics, stop or StopFlag(), val_characters, dist or DistContext(), report_interval_s,
        fine_tune,
    )  # fmt: skip
    if resume is not None:
        # Every value is checked first: PyTorch would fail on a bad one only mid-run.
        # A batch of examples may be the epoch's short last one: its state has fewer rows.
        short = isinstance(run.feed, ExampleFeed)
        check_training_state(resume, run.model, run.optimizer, config.batch_size, short)
        try:
            run.load_state(resume)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(
                f"the saved training state cannot be restored ({type(exc).__name__}: {exc}); "
                "it is damaged or from another charlm: start a new run with --init-from"
            ) from exc
    try:
        with stop_on_signals(run.stop), subnormals_flushed(device):
            return run.run()
    finally:
        # DistributedDataParallel holds the process group: drop it now, so that the group
        # can really be torn down before the interpreter exits (gloo aborts otherwise).
        run.net = run.model
        gc.collect()


@contextmanager
def subnormals_flushed(device: torch.device) -> Iterator[None]:
    """On a CPU, compute subnormal floats as zero in this thread while the block runs, then
    put back the setting found.

    Gradients that fade back through many steps reach subnormals, which x86 CPUs compute on
    many times slower: a classifier pooling only the last state of 115-character rows trained
    2.9x faster with this (MR, one thread: benchmarks/classifier_step.py). Numbers that small
    are as good as zero here; the setting is put back because other code in the process
    (NumPy, a test's float strategies) may rely on IEEE subnormals.
    """
    if device.type != "cpu":
        yield
        return
    # A normal float divided into the subnormal range: zero only when they are flushed.
    was_flushing = bool(torch.tensor(1e-38) / 1000 == 0)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


def _freeze_encoder(model: nn.Module) -> str:
    """Let only `model`'s output layer learn (`--freeze encoder`); what it says of that."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"--freeze encoder: {type(model).__name__} has no output layer 'head'")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in head.parameters():
        parameter.requires_grad_(True)
    learning, total = num_parameters(head), num_parameters(model)
    return f"--freeze encoder: the output layer alone learns ({learning:,} of {total:,} weights)"


def _layered_lm(model: nn.Module, config: TrainConfig) -> bool:
    """Whether a language model learns at discriminative rates (`--lr-decay-per-layer` with
    --init-from; a new run's checks refuse it without)."""
    layered = config.lr_decay_per_layer not in (None, 1)
    return layered and hasattr(model, "parameter_groups") and not is_classifier(model)


def _layered_message(groups: list[dict], decay: float) -> str:
    lowest = min(group["lr_scale"] for group in groups)
    return (
        f"--lr-decay-per-layer {decay:g}: each layer learns at 1/{decay:g} of the rate of the "
        f"one above it ({len(groups)} layers; the lowest at {lowest:.3g} of the head's rate)"
    )


class _Run:
    """One training run's moving parts; `c` holds its counters."""

    def __init__(
        self, model, train_ids, val_ids, config, device, reporter, checkpointer, metrics, stop,
        val_characters, dist, report_interval_s, fine_tune=False,
    ) -> None:  # fmt: skip
        self.autocast, self.scaler = mixed_precision(config.precision, device)
        self.config, self.device, self.dist, self.stop = config, device, dist, stop
        self.reporter, self.checkpointer = reporter, checkpointer
        self.feed = _feed(model, train_ids, val_ids, config, val_characters, dist)
        self.model = model.to(device).train()
        if config.freeze == "encoder":  # before DDP, which registers what learns
            reporter.message(_freeze_encoder(self.model))
        self.net: nn.Module = self.model
        if dist.enabled:
            dist.check_batch_size(config.batch_size)
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        # ULMFiT: lower layers learn more slowly, and a classifier's are unfrozen one by one
        # from the top.
        self.fine_tune = fine_tune and hasattr(model, "parameter_groups")
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if self.fine_tune:
            parameters = discriminative_groups(
                self.model.parameter_groups(),
                config.decay_per_layer(self.model.config.vocab_size),
            )
        elif _layered_lm(self.model, config):
            parameters = discriminative_groups(
                self.model.parameter_groups(), config.lr_decay_per_layer
            )
            reporter.message(_layered_message(parameters, config.lr_decay_per_layer))
        self.optimizer = build_optimizer(
            parameters, config.optimizer, lr=config.lr,
            momentum=config.momentum, weight_decay=config.weight_decay,
        )  # fmt: skip
        self.schedule = LRSchedule(
            config.schedule, config.lr, warmup=config.warmup, min_lr_ratio=config.min_lr_ratio,
            plateau_factor=config.plateau_factor, plateau_patience=config.plateau_patience,
            decay_factor=config.decay_factor, decay_start=config.decay_start,
        )  # fmt: skip
        self.recorder = Recorder(
            reporter, metrics, dist, device, stop_on_nonfinite=config.nonfinite == "stop",
            report_interval_s=report_interval_s,
        )  # fmt: skip
        self.steps_per_epoch = self.feed.steps_per_epoch
        self.planned_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.planned_steps = min(self.planned_steps, config.max_steps)
        self.c = RunCounters()
        self.hidden = None
        self.lr = config.lr

    def run(self) -> TrainResult:
        config, c = self.config, self.c
        stopped_by = self._already_done()  # a resumed run may have nothing left to do
        if stopped_by:  # and then leaves its checkpoint as it is
            self.reporter.message(self._nothing_left(stopped_by))
            return self.result(stopped_by)
        self._mark = time.perf_counter()
        for epoch in range(max(1, c.epoch), config.epochs + 1):
            if epoch != c.epoch:
                c.epoch, c.batch_index, self.hidden = epoch, 0, None
                self.recorder.epoch.reset()
            batches = itertools.islice(self.feed.epoch(epoch), c.batch_index, None)
            for batch, last in _lookahead(batches):
                self._train_step(batch)
                if last:  # the epoch is done, though its random offset may have cost a batch
                    c.batch_index = max(c.batch_index, self.steps_per_epoch)
                if c.step % config.log_every == 0:
                    self.recorder.log(c, self.lr)
                stopped_by = self._check_bounds()
                self.recorder.report(c, self.progress(), force=bool(stopped_by))
                due = (config.eval_every and c.step % config.eval_every == 0) or (
                    last and epoch < config.epochs
                )
                if due and self.feed.has_val:
                    self._evaluate()
                    if c.early_stopped and not stopped_by:
                        stopped_by = "early_stopping"
                if stopped_by:
                    break
            if stopped_by:
                break
        stopped_by = stopped_by or "epochs"
        if stopped_by in ("interrupted", "terminated"):
            saving = ": saving a checkpoint" if self.checkpointer is not None else ""
            self.reporter.message(f"{stopped_by} at step {c.step}{saving}")
        elif self.feed.has_val and c.last_eval_step != c.step:
            self._evaluate()
        if stopped_by == "epochs" and self.checkpointer is not None:
            self._say_if_time_was_left()
        if self.checkpointer is not None:
            self._say_if_bf16_is_faster()
        result = self.result(stopped_by)
        self._save_last(result)
        return result

    def _train_step(self, batch) -> None:
        c = self.c
        self.lr = self.schedule.lr_at(c.step + 1, self.progress(), self.schedule_epoch())
        set_lr(self.optimizer, self.lr, self.trainable_groups())
        started = time.perf_counter()
        with self.autocast():
            loss, tokens, self.hidden = self.feed.loss(
                self.net, batch, self.hidden, self.dist, self.device
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        # g ← min(1, θ/‖g‖)·g over all parameters together: an exploding gradient keeps its
        # direction but cannot take a step larger than θ.
        grad_norm = clip_gradients(
            self.optimizer, self.model.parameters(), self.config.clip,
            in_step=not self.scaler.is_enabled(),  # the scaler sets grad_scale itself
        )  # fmt: skip
        if self.config.nonfinite == "skip" and self._bad_step(loss, grad_norm):
            if self.scaler.is_enabled():
                # The scaler sees the non-finite gradients, skips the step, lowers its scale.
                self.scaler.step(self.optimizer)
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.hidden, c.skipped = None, c.skipped + 1
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.recorder.add(loss, tokens, grad_norm)
        now = time.perf_counter()
        c.compute_seconds += now - started
        c.step += 1
        c.batch_index += 1
        c.tokens_seen += tokens * self.dist.world_size
        c.train_seconds += now - self._mark
        self._mark = now

    def trainable_groups(self) -> int | None:
        """How many layer groups learn, from the top (None: all): with gradual unfreezing,
        the head alone in the first epoch, one more group each epoch after."""
        if not (self.fine_tune and self.config.gradual_unfreeze):
            return None
        return self.schedule_epoch()

    def _bad_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        # Reading the flags makes a GPU wait for this step; only "skip" pays that price.
        # With fp16 an overflowing gradient is routine and the scaler's business, not a skip.
        if not torch.isfinite(loss):
            return True
        return not self.scaler.is_enabled() and not bool(torch.isfinite(grad_norm))

    def _already_done(self) -> str:
        config, c = self.config, self.c
        if config.max_steps is not None and c.step >= config.max_steps:
            return "max_steps"
        if config.max_time is not None and c.train_seconds >= config.max_time:
            return "max_time"
        if c.early_stopped:
            return "early_stopping"
        if c.epoch > config.epochs or (
            c.epoch == config.epochs and c.batch_index >= self.steps_per_epoch
        ):
            return "epochs"
        return ""

    def _say_if_time_was_left(self) -> None:
        """A run that ends at its epochs well inside --max-time while its validation is still
        improving says so: it stopped short of the time its user gave it, and more epochs
        would likely help. A run whose best evaluation came earlier says nothing: more epochs
        did not help the names (3 minutes: 20 epochs end after 76 s; 40 epochs gave 1.826
        nats per character against 1.818)."""
        config, c = self.config, self.c
        if config.max_time is None or c.train_seconds >= UNUSED_TIME_NOTED * config.max_time:
            return
        if c.best_step != c.step:  # no validation, or the best came earlier
            return
        epochs = math.ceil(config.epochs * config.max_time / max(c.train_seconds, 1e-9))
        self.reporter.message(
            f"ended at its {config.epochs} epoch{'' if config.epochs == 1 else 's'} after "
            f"{format_duration(c.train_seconds)} of its {format_duration(config.max_time)} "
            f"(--max-time), its validation still improving; --epochs {epochs} would let it "
            "train for all of it"
        )

    def _say_if_bf16_is_faster(self) -> None:
        """A run of a minute or more in fp32 on a CPU that computes in bfloat16 says that
        --precision bf16 exists: on a 2-core Xeon with AMX it trained LSTMs at 1.4-1.9x the
        tokens per second (docs/benchmarks.md), which the progress display does not tell."""
        if self.device.type != "cpu" or self.config.precision != "fp32":
            return
        if self.model.config.hidden_size < BF16_NOTED_FROM_HIDDEN:
            return
        if self.c.train_seconds < BF16_NOTED_AFTER_S or not cpu_has_bf16_lstm():
            return
        self.reporter.message(
            "this CPU computes in bfloat16 (AMX or AVX-512 BF16): --precision bf16 trained "
            "LSTMs of 200-512 units 1.4-1.9x faster on such a CPU (docs/training.md)"
        )

    def _nothing_left(self, reason: str) -> str:
        """What a resumed run that cannot take a step has done, and what would let it go on."""
        config, c = self.config, self.c
        done = (
            f"nothing left to train: the run has trained {format_duration(c.train_seconds)} "
            f"({c.step:,} step{'' if c.step == 1 else 's'}, "
            f"{c.step / max(1, self.steps_per_epoch):.2f} epochs)"
        )
        if reason == "max_time":
            more = format_duration(math.ceil(c.train_seconds + config.max_time))
            return (
                f"{done} and --max-time {format_duration(config.max_time)} counts that time; "
                f"give a longer one, e.g. --max-time {more} for {format_duration(config.max_time)}"
                " more"
            )
        if reason == "max_steps":
            return (
                f"{done}, already --max-steps {config.max_steps:,}; give a larger one, e.g. "
                f"--max-steps {c.step + config.max_steps:,}"
            )
        if reason == "epochs":
            more = 2 * config.epochs
            return f"{done}, all of --epochs {config.epochs}; give more, e.g. --epochs {more}"
        return (
            f"{done}; it stopped early after {c.bad_evals} evaluations without a better "
            f"validation perplexity: give a larger --patience to go on"
        )

    def _check_bounds(self) -> str:
        config, c = self.config, self.c
        code = 0
        if config.max_steps is not None and c.step >= config.max_steps:
            code = 1
        elif config.max_time is not None and c.train_seconds >= config.max_time:
            code = 2
        if self.stop.reason:
            code = max(code, STOP_CODES.index(self.stop.reason))
        # Every rank must stop at the same step and follow the same clock, or they deadlock.
        code, c.train_seconds = self.dist.all_max([code, c.train_seconds], self.device)
        return STOP_CODES[int(code)]

    def progress(self) -> float:
        """How much of the run is done: by steps, or by the clock when there is a deadline."""
        fraction = self.c.step / max(1, self.planned_steps)
        if self.config.max_time is not None:
            fraction = max(fraction, self.c.train_seconds / self.config.max_time)
        return min(1.0, fraction)

    def schedule_epoch(self) -> int:
        """The epoch a per-epoch schedule goes by: the run's own, or under a deadline the
        share of the deadline used, counted in equal parts, one per epoch, if that is further
        on (so that the schedule ends at the deadline, like cosine)."""
        if self.config.max_time is None:
            return self.c.epoch
        shares = min(self.config.epochs, 1 + int(self.progress() * self.config.epochs))
        return max(self.c.epoch, shares)

    def _evaluate(self) -> None:
        config, c = self.config, self.c
        found = self.feed.validate(self.model, self.device)
        val_loss = found.loss
        c.val_loss, c.last_eval_step = val_loss, c.step
        if not math.isfinite(val_loss):
            skipping = config.nonfinite == "skip"
            raise TrainingError(nonfinite_message("validation loss", c.step, skipping))
        best_summary = None
        if improves(found, c):
            c.best_val, c.best_error, c.best_step, c.bad_evals = val_loss, found.error, c.step, 0
            best_summary = self.result("").to_dict()  # on every rank: it averages over them
        else:
            c.bad_evals += 1
        if self.schedule.on_eval(perplexity(val_loss)):
            next_lr = self.schedule.lr_at(c.step + 1, self.progress(), self.schedule_epoch())
            self.reporter.message(f"validation stalled: learning rate now {next_lr:.3g}")
        if config.patience is not None and c.bad_evals >= config.patience:
            c.early_stopped = True
            self.reporter.message(
                f"early stopping: no improvement in {c.bad_evals} evaluations; best validation "
                f"{_best(c)} at step {c.best_step}"
            )
        self.recorder.evaluation(c, found, self.feed.bits_per_character(val_loss))
        # The last checkpoint first: a new run's first save commits it to the directory
        # (RunSaver), and only then may its best replace the old run's.
        self._save_last(self.result(""))
        if best_summary is not None and self.checkpointer is not None and _all_finite(self.model):
            self.checkpointer.save_best(self.model, best_summary)
        self._mark = time.perf_counter()  # evaluating and saving are not training time

    def _save_last(self, result: TrainResult) -> None:
        state = self.state_dict()  # every rank takes part: the hidden state is gathered
        if self.checkpointer is not None:
            self.checkpointer.save_last(self.model, state, result.to_dict())

    def result(self, stopped_by: str) -> TrainResult:
        """The run so far; under torchrun every rank must call it at the same step."""
        c = self.c
        train_loss = self.recorder.epoch_loss()
        return TrainResult(
            steps=c.step,
            epochs=round(c.step / max(1, self.steps_per_epoch), 3),
            tokens_seen=c.tokens_seen,
            train_seconds=c.train_seconds,
            train_loss=train_loss,
            train_perplexity=perplexity(train_loss),
            val_loss=c.val_loss,
            val_perplexity=None if c.val_loss is None else perplexity(c.val_loss),
            stopped_by=stopped_by,
            best_val_perplexity=None if c.best_val is None else perplexity(c.best_val),
            best_step=c.best_step,
            best_val_accuracy=None if c.best_error is None else 1 - c.best_error,
            skipped_batches=c.skipped,
            compute_seconds=c.compute_seconds,
        )

    def state_dict(self) -> TrainingState:
        """Everything besides the weights that the next step depends on."""
        optimizer_json, tensors = optimizer_state(self.optimizer)
        tensors.update(rng_tensors(self.device))
        tensors.update(state_tensors(self.dist.gather_state(self.hidden)))
        meta = {
            "version": TRAINING_STATE_VERSION,
            **asdict(self.c),
            **self.recorder.state(),
            "schedule": self.schedule.state_dict(),
            "optimizer": optimizer_json,
            "scaler": self.scaler.state_dict(),
            "world_size": self.dist.world_size,
        }
        return TrainingState(meta, tensors)

    def load_state(self, state: TrainingState) -> None:
        meta, tensors = state.meta, state.tensors
        # States saved before a counter existed lack it: it starts from its default.
        self.c = RunCounters(**{f.name: meta.get(f.name, f.default) for f in fields(RunCounters)})
        self.recorder.load(meta)
        self.schedule.load_state_dict(meta["schedule"])
        load_optimizer_state(self.optimizer, meta["optimizer"], tensors)
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        restore_rng(tensors, self.device)
        self.hidden = self.dist.shard_state(restore_hidden(tensors, self.device))


def _best(c: RunCounters) -> str:
    if c.best_error is not None:
        return f"accuracy {1 - c.best_error:.1%}"
    return f"perplexity {perplexity(c.best_val):.3f}"


def improves(found: Validation, c: RunCounters) -> bool:
    """Whether the evaluation `found` beats the best so far: by a lower loss, or for a
    classifier by fewer wrong labels, the loss deciding between equals. A classifier is used
    for its labels, and its loss turns up while its accuracy still climbs (MR: 74.8% kept by
    the loss, 76.8% by the labels, on fold 0; docs/benchmarks.md#classifiers)."""
    if c.best_val is None:
        return True
    if found.error is None or c.best_error is None:
        return found.loss < c.best_val
    return (found.error, found.loss) < (c.best_error, c.best_val)


def _feed(model, train_ids, val_ids, config, val_characters, dist):
    if is_classifier(model):
        return ClassifierFeed(train_ids, val_ids, config, model, dist)
    if not isinstance(train_ids, ExampleIds):
        return StreamFeed(train_ids, val_ids, config, val_characters)
    if model.config.end_id is None:
        raise TrainingError("a model trained on examples needs the end token (end_token=True)")
    return ExampleFeed(train_ids, val_ids, config, model.config.end_id, dist)


def _lookahead(items: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Each item with whether it is the last one."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
