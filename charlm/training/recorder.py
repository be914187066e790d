"""What a training run tells the world: metrics-log records and live progress reports.

Losses are summed on the device (`LossMeter`) and read back only when a record is written
or the display refreshed, so a GPU is not made to wait after every step. Under torchrun the
logged numbers are means over all processes.
"""

from __future__ import annotations

import math
import reprlib
import time
from typing import Any

import torch
import torch.distributed

from charlm.errors import TrainingError
from charlm.metrics import perplexity
from charlm.training.config import (
    EvalReport,
    MetricsSink,
    Reporter,
    RunCounters,
    StepReport,
    Validation,
)
from charlm.training.distributed import DistContext
from charlm.training.state_checks import recorder_problem


def nonfinite_message(what: str, step: int, skipping: bool = False) -> str:
    """Why the run stopped and what to try; the run adds what it kept (training/run.py)."""
    if skipping:  # --nonfinite skip passes over training steps, never over an evaluation
        advice = "Lower --lr or --clip (--nonfinite skip skips training steps, not evaluations)"
    else:
        advice = "Lower --lr or --clip, or pass --nonfinite skip"
    return f"the {what} became non-finite by step {step}; training stopped. {advice}"


class Recorder:
    """Accumulates training losses; writes log records and reports to the display."""

    def __init__(
        self,
        reporter: Reporter,
        metrics: MetricsSink | None,
        dist: DistContext,
        device: torch.device,
        *,
        stop_on_nonfinite: bool,
        report_interval_s: float = 0.25,
    ) -> None:
        self.reporter, self.metrics, self.dist = reporter, metrics, dist
        self.stop_on_nonfinite = stop_on_nonfinite
        self.report_interval_s = report_interval_s
        self.epoch = LossMeter(device)  # since the epoch began: the result's train loss
        self.window = LossMeter(device)  # since the last log record
        self.window_start = (0.0, 0)  # training seconds and tokens when the window opened
        self._reported = (time.perf_counter(), 0, 0.0)

    def add(self, loss: torch.Tensor, tokens: int, grad_norm: torch.Tensor) -> None:
        self.window.add(loss, tokens, grad_norm)
        self.epoch.add(loss, tokens, grad_norm)

    def log(self, c: RunCounters, lr: float) -> None:
        """One record for the steps since the last one (every rank must call it)."""
        loss = self.dist.all_mean(self.window.mean_loss()).item()
        grad = self.dist.all_mean(self.window.mean_grad()).item()
        self._check(loss, c.step)
        seconds, tokens = self.window_start
        record = {
            "step": c.step,
            "epoch": c.epoch,
            "lr": lr,
            "train_loss": loss,
            "train_perplexity": perplexity(loss),
            "grad_norm": grad,
            "tokens_per_s": (c.tokens_seen - tokens) / max(1e-9, c.train_seconds - seconds),
            "elapsed_s": c.train_seconds,
        }
        if c.skipped:
            record["skipped_batches"] = c.skipped
        self.write(record)
        self.window.reset()
        self.window_start = (c.train_seconds, c.tokens_seen)

    def report(self, c: RunCounters, fraction_done: float, force: bool = False) -> None:
        """Refresh the display a few times a second (this rank's numbers only)."""
        now = time.perf_counter()
        last_time, last_tokens, last_seconds = self._reported
        if not force and now - last_time < self.report_interval_s:
            return
        loss = self.epoch.mean_loss().item()
        self._check(loss, c.step)
        rate = (c.tokens_seen - last_tokens) / max(1e-9, c.train_seconds - last_seconds)
        self.reporter.on_step(
            StepReport(
                c.step, c.epoch, loss, perplexity(loss), rate, c.train_seconds, fraction_done
            )
        )
        self._reported = (now, c.tokens_seen, c.train_seconds)

    def evaluation(self, c: RunCounters, found: Validation, bpc: float) -> None:
        val_ppl = perplexity(found.loss)
        record = {
            "step": c.step,
            "epoch": c.epoch,
            "elapsed_s": c.train_seconds,
            "val_loss": found.loss,
            "val_perplexity": val_ppl,
            "val_bpc": bpc,
        }
        accuracy = None if found.error is None else 1 - found.error
        if accuracy is not None:
            record["val_accuracy"] = accuracy
        self.write(record)
        best = None if c.best_val is None else perplexity(c.best_val)
        self.reporter.on_eval(EvalReport(c.step, c.epoch, found.loss, val_ppl, best, accuracy))

    def epoch_loss(self) -> float:
        """Mean training loss of the epoch so far, over all ranks (every rank must call it)."""
        mean = self.dist.all_mean(self.epoch.mean_loss()).item()
        return mean if self.epoch.tokens else math.nan

    def write(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(record)

    def _check(self, loss: float, step: int) -> None:
        if self.stop_on_nonfinite and not math.isfinite(loss):
            raise TrainingError(nonfinite_message("training loss", step))

    def state(self) -> dict[str, Any]:
        """The meters for a checkpoint (under torchrun every rank must call it at once).

        A logged loss is the mean of the ranks' own means, each over its own totals, so
        under torchrun every rank's totals are saved (`rank_meters`, in rank order) and each
        rank takes its own back on a resume: its next record is the one it would have
        written unstopped. `epoch_meter` and `window` hold the ranks' mean totals, which a
        run resumed by another number of processes starts every rank from.
        """
        epoch, window = self.epoch.state(), self.window.state()
        state = {"epoch_meter": epoch, "window": window, "window_start": list(self.window_start)}
        if self.dist.enabled:
            ranks = [
                [_counts(row[:4]), _counts(row[4:])] for row in self._every_rank(epoch + window)
            ]
            state["epoch_meter"] = _mean([e for e, _ in ranks])
            state["window"] = _mean([w for _, w in ranks])
            state["rank_meters"] = ranks
        return state

    def load(self, state: dict[str, Any]) -> None:
        epoch, window = state["epoch_meter"], state["window"]
        ranks = state.get("rank_meters")
        if ranks is not None:
            # Checked whole on every rank, so that all ranks refuse a damaged one together.
            if not isinstance(ranks, list) or not all(map(_meter_pair, ranks)):
                raise ValueError(f"rank_meters is {reprlib.repr(ranks)}")
            if len(ranks) == self.dist.world_size:  # each rank goes on from its own totals
                epoch, window = ranks[self.dist.rank]
        self.epoch.load(epoch)
        self.window.load(window)
        self.window_start = tuple(state["window_start"])

    def _every_rank(self, values: list[float]) -> list[list[float]]:
        """`values` from every rank, in rank order, exactly (every rank must call it)."""
        mine = torch.tensor(values, dtype=torch.float64, device=self.window.device)
        parts = [torch.empty_like(mine) for _ in range(self.dist.world_size)]
        torch.distributed.all_gather(parts, mine)
        return [part.tolist() for part in parts]


def _meter_pair(row: Any) -> bool:
    """Whether `row` is one rank's [epoch meter, window], as the state checks want them."""
    if not isinstance(row, list) or len(row) != 2:
        return False
    return not recorder_problem({"epoch_meter": row[0], "window": row[1], "window_start": [0, 0]})


def _mean(meters: list[list[float]]) -> list[float]:
    return _counts([sum(column) / len(meters) for column in zip(*meters)])


def _counts(meter: list[float]) -> list[float]:
    """A meter's [loss, grad, tokens, steps] with whole counts as integers (128.0 → 128),
    as LossMeter.state() gives them."""
    loss, grad, *counts = meter
    return [loss, grad, *(int(n) if float(n).is_integer() else n for n in counts)]


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
