"""Examples as ids, and the third batch iterator: one example per row, each from its own start.

An example of n tokens t₁..tₙ is one row. The model reads a start token and then the
example, and learns to predict the example and then the end of it:

    inputs   <e>  t₁  t₂ ... tₙ    <e> <e>     <e> is one id, the end token, which also
    targets  t₁   t₂  t₃ ... <e>   <e> <e>     stands first in every example: an example
    mask     1    1   1  ...  1     0   0      starts where the one before it ended

Rows are padded to the longest example of their batch, and examples of similar length are
batched together (bucketed), so that little of a batch is padding. The mask is 0 on padding
and the loss is summed over the mask only; since a recurrent network reads left to right,
padding after an example cannot change what the network computed for it, so each example's
loss is the same alone or padded in a batch. Every batch starts from a zero state.

An example longer than `seq_len` is cut into windows of `seq_len` positions: the batch's
windows follow one another with the state carried between them (`continues`), as the
sequential iterator carries it between batches.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from charlm.errors import ConfigError, CorpusError

# Examples are sorted by length within pools of this many batches, then cut into batches,
# whose order is shuffled: batches of alike lengths, yet a different mix every epoch.
BUCKET_BATCHES = 50
PRIORS = ("learned", "uniform")


@dataclass
class ExampleIds:
    """The token ids of many examples, end to end, and where each one starts."""

    ids: np.ndarray  # every example's ids, concatenated
    offsets: np.ndarray  # (examples + 1,): example i is ids[offsets[i]:offsets[i + 1]]
    labels: np.ndarray | None = None  # (examples,) label index of each example
    characters: int = 0  # characters of the texts, for bits per character

    @classmethod
    def from_lists(
        cls,
        examples: Sequence[Sequence[int] | np.ndarray],
        labels: Sequence[int] | None = None,
        characters: int | None = None,
    ) -> ExampleIds:
        lengths = np.array([len(e) for e in examples], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        parts = [np.asarray(e, dtype=np.int64) for e in examples]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        label_array = None if labels is None else np.asarray(labels, dtype=np.int64)
        if label_array is not None and len(label_array) != len(lengths):
            raise ValueError(f"{len(lengths)} examples but {len(label_array)} labels")
        characters = int(lengths.sum()) if characters is None else characters
        return cls(ids, offsets, label_array, characters)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of each example (its end token not counted)."""
        return np.diff(self.offsets)

    @property
    def num_targets(self) -> int:
        """Tokens a model predicts over all examples: each example's tokens and its end."""
        return int(self.lengths.sum()) + len(self)

    def example(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]


@dataclass
class LabelSet:
    """The labels a model was trained on, in index order, with their training examples."""

    names: list[str]
    counts: list[int]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.counts) or len(set(self.names)) != len(self.names):
            raise ConfigError("labels must be distinct names, each with its count")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The index of label `name`; a one-line ConfigError listing the labels otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            close = difflib.get_close_matches(name, self.names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"unknown label {name!r}{hint}; the labels are: {', '.join(self.names)}"
            ) from None

    def log_prior(self, prior: str = "learned") -> np.ndarray:
        """log p(label): from the training counts ("learned") or equal ("uniform")."""
        if prior not in PRIORS:
            raise ConfigError(f"unknown prior {prior!r}; use {' or '.join(PRIORS)}")
        counts = np.asarray(self.counts, dtype=np.float64)
        if prior == "uniform" or counts.sum() <= 0:
            counts = np.ones(len(self.names))
        return np.log(counts / counts.sum())

    def to_dict(self) -> dict[str, int]:
        """{label: training examples}, in index order: how the checkpoint stores them."""
        return dict(zip(self.names, self.counts))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in data.items()
        ):
            raise ConfigError("labels must map each label name to its count of examples")
        return cls(list(data), list(data.values()))


class ExampleBatch(NamedTuple):
    """One batch of examples: padded rows, the mask of real targets, and the labels."""

    inputs: torch.Tensor  # (batch, seq) int64
    targets: torch.Tensor  # (batch, seq) int64
    mask: torch.Tensor  # (batch, seq) float32: 1 where the target is real, 0 on padding
    labels: torch.Tensor | None  # (batch,) int64
    continues: bool = False  # the rows go on from the previous batch's: carry the state

    @property
    def num_targets(self) -> int:
        return int(self.mask.sum().item())


def pad_examples(
    examples: Sequence[np.ndarray | Sequence[int]],
    end_id: int,
    labels: Sequence[int] | np.ndarray | None = None,
) -> ExampleBatch:
    """One batch of whole examples: start token, ids, end token, padded to the longest."""
    width = max(len(e) for e in examples) + 1
    inputs = np.full((len(examples), width), end_id, dtype=np.int64)
    targets = np.full((len(examples), width), end_id, dtype=np.int64)
    mask = np.zeros((len(examples), width), dtype=np.float32)
    for row, ids in enumerate(examples):
        n = len(ids)
        inputs[row, 1 : n + 1] = ids  # inputs[row, 0] is the start token
        targets[row, :n] = ids  # targets[row, n] is the end token
        mask[row, : n + 1] = 1.0
    label_tensor = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return ExampleBatch(
        torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(mask), label_tensor
    )


def example_batches(
    examples: ExampleIds,
    batch_size: int,
    *,
    end_id: int,
    seq_len: int | None = None,
    seed: int | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[ExampleBatch]:
    """One epoch of padded, length-bucketed batches of examples (see the module docstring).

    `shuffle` False draws nothing at random (for evaluation): the examples in order, sorted
    by length within each pool. `drop_last` drops a final batch smaller than `batch_size`.
    """
    if batch_size < 1 or (seq_len is not None and seq_len < 1):
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if len(examples) == 0:
        raise CorpusError("there are no examples to make batches of")
    for rows in plan_batches(examples.lengths, batch_size, seed, shuffle, drop_last):
        labels = None if examples.labels is None else examples.labels[rows]
        batch = pad_examples([examples.example(i) for i in rows], end_id, labels)
        yield from _windows(batch, seq_len)


def plan_batches(
    lengths: np.ndarray, batch_size: int, seed: int | None, shuffle: bool, drop_last: bool
) -> list[np.ndarray]:
    """The example indices of each batch, in the order they are trained."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    pool = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def count_example_batches(
    examples: ExampleIds, batch_size: int, seq_len: int | None, seed: int | None = None
) -> int:
    """How many batches (windows included) one epoch of `example_batches` yields."""
    lengths = examples.lengths
    plan = plan_batches(lengths, batch_size, seed, shuffle=True, drop_last=False)
    if seq_len is None:
        return len(plan)
    return sum(math.ceil((int(lengths[rows].max()) + 1) / seq_len) for rows in plan)


def _windows(batch: ExampleBatch, seq_len: int | None) -> Iterator[ExampleBatch]:
    width = batch.inputs.shape[1]
    if seq_len is None or width <= seq_len:
        yield batch
        return
    for start in range(0, width, seq_len):
        part = slice(start, start + seq_len)
        yield ExampleBatch(
            batch.inputs[:, part], batch.targets[:, part], batch.mask[:, part], batch.labels,
            continues=start > 0,
        )  # fmt: skip
