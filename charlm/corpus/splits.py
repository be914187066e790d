"""Train / validation / test splits: a contiguous tail of every book, or separate files.

Each book is cut on its own, so with several books every one is represented in training:

    book:  [ train ........................ | validation | test ]
                                             val_fraction  test_fraction (of this book)

A split given as a file (`val_file`, `test_file`) replaces the fraction for that split.

Examples (names, sentences) are split by distinct text instead, label by label, with a seed
(`split_examples`): every copy of a text goes to the same split, so no text is in two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from charlm.errors import ConfigError

if TYPE_CHECKING:
    from .examples import ExampleSet


@dataclass
class SplitConfig:
    """How validation and test text are chosen; stored in the checkpoint's data section."""

    val_fraction: float = 0.1
    test_fraction: float = 0.0
    val_file: str | None = None
    test_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if self.tail_fractions()[0] + self.tail_fractions()[1] >= 1.0:
            raise ConfigError(
                "validation and test fractions together take the whole book; lower them"
            )
        if self.val_file and self.test_file and _same(self.val_file, self.test_file):
            raise ConfigError(f"{self.val_file} cannot be both the validation and the test file")

    def tail_fractions(self) -> tuple[float, float]:
        """(validation, test) fractions cut from each book; 0 where a file gives the split."""
        return (
            0.0 if self.val_file else self.val_fraction,
            0.0 if self.test_file else self.test_fraction,
        )

    def has_val(self) -> bool:
        return bool(self.val_file) or self.val_fraction > 0

    def has_test(self) -> bool:
        return bool(self.test_file) or self.test_fraction > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitConfig:
        return cls(
            **{
                k: data[k]
                for k in ("val_fraction", "test_fraction", "val_file", "test_file")
                if k in data
            }
        )


def split_regions(length: int, config: SplitConfig) -> tuple[int, int]:
    """(train_end, val_end): a book of `length` characters splits into
    [0, train_end) train, [train_end, val_end) validation, [val_end, length) test."""
    val_fraction, test_fraction = config.tail_fractions()
    test = int(round(length * test_fraction))
    val = int(round(length * val_fraction))
    return length - val - test, length - test


def _same(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def split_examples(
    examples: ExampleSet, val_fraction: float, test_fraction: float, seed: int
) -> tuple[ExampleSet, ExampleSet, ExampleSet]:
    """(train, validation, test): each label's distinct texts shuffled with `seed` and cut by
    the fractions; every example follows its text.

    A text under several labels is placed once, by the first label (in sorted order) that
    has it, so it too lands in one split. Each label keeps at least one text for training.
    """
    rng = np.random.default_rng(seed)
    split_of: dict[str, int] = {}  # text → 0 train, 1 validation, 2 test
    distinct = _distinct_texts(examples)
    for texts in distinct.values():
        new = [text for text in texts if text not in split_of]
        val, test = _cut(len(new), val_fraction, test_fraction)
        for rank, position in enumerate(rng.permutation(len(new))):
            split_of[new[position]] = 2 if rank < test else 1 if rank < test + val else 0
    for texts in distinct.values():
        # A label whose texts an earlier label placed may have none left to train on: one
        # of them trains (the split is otherwise as drawn).
        if all(split_of[text] for text in texts):
            split_of[texts[int(rng.integers(len(texts)))]] = 0
    parts: list[list[int]] = [[], [], []]
    for index, text in enumerate(examples.texts):
        parts[split_of[text]].append(index)
    train, val, test = (examples.subset(indices) for indices in parts)
    return train, val, test


def _cut(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of `count` texts go to validation and to test; one at least stays to train."""
    val, test = int(round(count * val_fraction)), int(round(count * test_fraction))
    excess = max(0, val + test - max(0, count - 1))
    from_val = min(val, excess)
    return val - from_val, test - (excess - from_val)


def _distinct_texts(examples: ExampleSet) -> dict[str | None, list[str]]:
    """Each label's distinct texts in the order first read, labels in sorted order."""
    found: dict[str | None, dict[str, None]] = {}
    for text, label in examples.pairs():
        found.setdefault(label, {})[text] = None
    ordered = sorted(found, key=lambda label: (label is not None, label or ""))
    return {label: list(found[label]) for label in ordered}
