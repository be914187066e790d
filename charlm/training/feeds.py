"""What the training loop feeds the model: continuous text, or examples one per row.

A feed knows its batches and how one batch becomes a loss:

    StreamFeed   the sequential or random iterator over one long id array; the state is carried
                 from batch to batch (detached) with the sequential one, fresh with the random
    ExampleFeed  `example_batches`: padded rows, the loss summed over the mask only, the labels
                 given to the model; the state is fresh for each batch, carried only across the
                 windows of one batch of long examples
    ClassifierFeed  the same batches of whole examples (never cut into windows), the loss the
                 (class-weighted) cross-entropy of each example's label

Both score validation and test data the same way: mean nats per predicted token over all of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from charlm.data import (
    Batch,
    ExampleBatch,
    ExampleIds,
    batches_per_epoch,
    count_example_batches,
    evaluation_batches,
    example_batches,
    random_batches,
    sequential_batches,
)
from charlm.errors import ConfigError
from charlm.models import RNNLM, State, classifier_log_posterior, detach_state, lengths_of
from charlm.training.config import TrainConfig, Validation
from charlm.training.distributed import DistContext

# One forward pass's result: the mean loss, the tokens it was taken over, the state after.
Step = tuple[torch.Tensor, int, State | None]


def _epoch_seed(config: TrainConfig, epoch: int) -> int:
    # A different, reproducible offset (and order) each epoch.
    return config.seed * 100_003 + epoch


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
        nll, state = model(x, state, targets=y)  # (batch, seq) nats
        total += nll.sum().double()
        count += y.numel()
    model.train(was_training)
    return total.item() / count


@torch.inference_mode()
def evaluate_example_ids(
    model: RNNLM,
    examples: ExampleIds,
    *,
    batch_size: int,
    device: torch.device,
    seq_len: int | None = None,
) -> float:
    """Mean nats per predicted token over `examples`: every token of each and its end token,
    each example read from its own start (given its label, for a labelled model)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    state = None
    batches = example_batches(
        examples, batch_size, end_id=model.config.end_id, seq_len=seq_len, shuffle=False
    )
    for batch in batches:
        nll, state = _example_nll(model, batch, state if batch.continues else None, device)
        total += (nll * batch.mask.to(device)).sum().double()
    model.train(was_training)
    return total.item() / examples.num_targets


def _example_nll(
    net: torch.nn.Module, batch: ExampleBatch, state: State | None, device: torch.device
) -> tuple[torch.Tensor, State]:
    labels = None if batch.labels is None else batch.labels.to(device, non_blocking=True)
    return net(
        batch.inputs.to(device, non_blocking=True),
        state,
        targets=batch.targets.to(device, non_blocking=True),
        labels=labels,
    )  # (batch, seq) nats


class StreamFeed:
    """Continuous text: the sequential or the random iterator over one id array."""

    def __init__(
        self,
        train_ids: np.ndarray,
        val_ids: np.ndarray | None,
        config: TrainConfig,
        val_characters: int | None,
    ) -> None:
        self.train_ids, self.val_ids, self.config = train_ids, val_ids, config
        self.val_characters = val_characters
        self.steps_per_epoch = batches_per_epoch(len(train_ids), config.batch_size, config.seq_len)

    @property
    def has_val(self) -> bool:
        return self.val_ids is not None

    def epoch(self, epoch: int) -> Iterator[Batch]:
        config = self.config
        make = sequential_batches if config.iterator == "sequential" else random_batches
        return make(
            self.train_ids, config.batch_size, config.seq_len, seed=_epoch_seed(config, epoch)
        )

    def loss(
        self, net: torch.nn.Module, batch: Batch, hidden: State | None, dist: DistContext,
        device: torch.device,
    ) -> Step:  # fmt: skip
        x, y = batch
        x = dist.shard(x).to(device, non_blocking=True)
        y = dist.shard(y).to(device, non_blocking=True)
        if self.config.iterator == "sequential" and hidden is not None:
            # Keep the values so each row continues its stream; drop the graph so the
            # backward pass stops here instead of running back to the start of the epoch.
            hidden = detach_state(hidden)
        else:
            hidden = None  # random batches are unrelated to the last: start from zeros
        nll, hidden = net(x, hidden, targets=y)  # (batch, seq) nats
        return nll.mean(), y.numel(), hidden

    def score(self, model: RNNLM, ids: Any, device: torch.device) -> float:
        """Mean nats per token over `ids` (validation or test)."""
        config = self.config
        return evaluate(
            model, ids, batch_size=config.batch_size, seq_len=config.seq_len, device=device
        )

    def validate(self, model: RNNLM, device: torch.device) -> Validation:
        return Validation(self.score(model, self.val_ids, device))

    def bits_per_character(self, val_loss: float) -> float:
        # Nats per token → bits per character: scale by the text's tokens per character.
        tokens = len(self.val_ids)
        characters = self.val_characters or tokens
        return val_loss * tokens / characters / math.log(2)


class ExampleFeed:
    """Examples, one per row, each from its own start; labels given to a labelled model."""

    def __init__(
        self,
        train: ExampleIds,
        val: ExampleIds | None,
        config: TrainConfig,
        end_id: int,
        dist: DistContext,
    ) -> None:
        self.train, self.val, self.config, self.end_id = train, val, config, end_id
        # Under torchrun every rank takes an equal share of each batch: a short last one
        # could leave a rank nothing.
        self.drop_last = dist.enabled
        self.steps_per_epoch = count_example_batches(
            train, config.batch_size, self.window, _epoch_seed(config, 1)
        )

    @property
    def window(self) -> int | None:
        """The longest stretch of an example one step reads (longer ones are cut)."""
        return self.config.seq_len

    @property
    def has_val(self) -> bool:
        return self.val is not None

    def epoch(self, epoch: int) -> Iterator[ExampleBatch]:
        config = self.config
        return example_batches(
            self.train, config.batch_size, end_id=self.end_id, seq_len=self.window,
            seed=_epoch_seed(config, epoch), drop_last=self.drop_last,
        )  # fmt: skip

    def loss(
        self, net: torch.nn.Module, batch: ExampleBatch, hidden: State | None,
        dist: DistContext, device: torch.device,
    ) -> Step:  # fmt: skip
        mask = dist.shard(batch.mask)
        tokens = int(mask.sum())  # counted on the CPU: no wait for the device
        part = ExampleBatch(
            dist.shard(batch.inputs), dist.shard(batch.targets), mask,
            None if batch.labels is None else dist.shard(batch.labels), batch.continues,
        )  # fmt: skip
        # Each batch of examples starts from zeros; only its later windows carry the state.
        hidden = detach_state(hidden) if batch.continues and hidden is not None else None
        nll, hidden = _example_nll(net, part, hidden, device)
        # Padding is masked out: the loss is the mean over the real targets only.
        loss = (nll * mask.to(device, non_blocking=True)).sum() / max(1, tokens)
        return loss, tokens, hidden

    def score(self, model: RNNLM, examples: ExampleIds, device: torch.device) -> float:
        """Mean nats per predicted token over `examples` (validation or test)."""
        config = self.config
        return evaluate_example_ids(
            model, examples, batch_size=config.batch_size, device=device, seq_len=config.seq_len
        )

    def validate(self, model: RNNLM, device: torch.device) -> Validation:
        return Validation(self.score(model, self.val, device))

    def bits_per_character(self, val_loss: float) -> float:
        # The end of each example is predicted like a character and counted as one.
        symbols = self.val.characters + len(self.val)
        return val_loss * self.val.num_targets / max(1, symbols) / math.log(2)


def class_weights(labels: np.ndarray, num_labels: int, kind: str) -> torch.Tensor | None:
    """Loss weights per label: None (all 1), or "balanced": n / (labels · count of the label),
    so that every label weighs as much in the loss as if the labels were equally common."""
    if kind == "none":
        return None
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = len(labels) / (num_labels * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def _logits(net: torch.nn.Module, batch: ExampleBatch, device: torch.device) -> torch.Tensor:
    lengths = lengths_of(batch.mask)  # the start token and the example
    return net(batch.inputs.to(device, non_blocking=True), lengths.to(device))  # (batch, labels)


def classifier_predictions(
    model: torch.nn.Module, examples: ExampleIds, *, batch_size: int, device: torch.device
) -> np.ndarray:
    """log p(label | example) (examples, labels) of a classifier, in the examples' order."""
    was_training = model.training
    model.eval()
    rows = [examples.example(i) for i in range(len(examples))]
    out = classifier_log_posterior(model, rows, model.config.end_id, device, batch_size)
    model.train(was_training)
    return out


class ClassifierFeed(ExampleFeed):
    """Labelled examples for a classifier: whole examples (never cut into windows), one label
    each; the loss is the (class-weighted) cross-entropy of the labels."""

    def __init__(
        self, train: ExampleIds, val: ExampleIds | None, config: TrainConfig, model: Any,
        dist: DistContext,
    ) -> None:  # fmt: skip
        if train.labels is None:
            raise ConfigError("a classifier trains on labelled examples: give --labels")
        super().__init__(train, val, config, model.config.end_id, dist)
        self.weights = class_weights(train.labels, model.config.num_labels, config.class_weights)

    @property
    def window(self) -> int | None:
        return None  # the label depends on the whole example

    def loss(
        self, net: torch.nn.Module, batch: ExampleBatch, hidden: State | None,
        dist: DistContext, device: torch.device,
    ) -> Step:  # fmt: skip
        mask = dist.shard(batch.mask)
        part = ExampleBatch(dist.shard(batch.inputs), dist.shard(batch.targets), mask,
                            dist.shard(batch.labels))  # fmt: skip
        logits = _logits(net, part, device).float()
        if self.weights is not None and self.weights.device != device:
            self.weights = self.weights.to(device)  # once, not at every step
        loss = F.cross_entropy(logits, part.labels.to(device), weight=self.weights)
        return loss, int(mask.sum()), None

    def score(self, model: torch.nn.Module, examples: ExampleIds, device: torch.device) -> float:
        """Mean cross-entropy of the true labels (class-weighted as in training), in nats."""
        return self._measure(model, examples, device).loss

    def validate(self, model: torch.nn.Module, device: torch.device) -> Validation:
        # The classifier alone, even one that keeps a labelled LM: chosen by the pair, the
        # best evaluations came earlier and scored lower on the names (docs/benchmarks.md).
        return self._measure(model, self.val, device)

    def _measure(
        self, model: torch.nn.Module, examples: ExampleIds, device: torch.device
    ) -> Validation:
        """The cross-entropy of `score`, and the share of `examples` labelled wrongly."""
        log_probs = classifier_predictions(
            model, examples, batch_size=self.config.batch_size, device=device
        )
        truth = examples.labels
        nll = -log_probs[np.arange(len(truth)), truth]
        error = float((log_probs.argmax(axis=1) != truth).mean())
        if self.weights is None:
            return Validation(float(nll.mean()), error)
        weight = self.weights.double().cpu().numpy()[truth]
        return Validation(float((nll * weight).sum() / weight.sum()), error)

    def bits_per_character(self, val_loss: float) -> float:
        # A classifier predicts one label per example, no characters: bits per example.
        return val_loss / math.log(2)
