"""`charlm train --ngram N`: an n-gram model of the training text, mixed with the network.

After the run, a token n-gram model (charlm/models/ngram.py) is counted on the training ids
and saved beside each checkpoint the run wrote (the last one and `best`), with the network's
weight in the mixture fitted on the validation text for that checkpoint's own network: the
weight that gives the validation text the highest probability, so nothing about the test text
or any later use chooses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from charlm.checkpoint import attach_ngram, load_checkpoint
from charlm.models.losses import token_log_probs
from charlm.models.ngram import NgramModel, mix, mixture_weight

# Logits held at once while a held-out text is read: 16M floats (64 MB).
LOGITS_PER_CALL = 1 << 24


class HeldOut:
    """A held-out text's ids and characters, and each token's log-probability under the
    n-gram model (the first token is the context of the rest)."""

    def __init__(self, ids: np.ndarray, characters: int | None, ngram: NgramModel) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.characters = characters or len(self.ids) - 1
        self.counted = ngram.log_probs(self.ids[1:], context=self.ids[:1])

    def network(self, model: torch.nn.Module, device: torch.device) -> np.ndarray:
        """Each token's log-probability under the network."""
        chunk = max(1, LOGITS_PER_CALL // model.config.vocab_size)
        found = token_log_probs(model, self.ids[:-1], self.ids[1:], None, chunk, device)
        return found.cpu().numpy()

    def bits(self, log_probs: np.ndarray) -> float:
        return -float(log_probs.sum()) / self.characters / math.log(2)


def attach_fitted_ngram(
    checkpoints: Sequence[Path],
    train_ids: np.ndarray,
    order: int,
    device: torch.device,
    say: Callable[[str], None],
    validation: tuple[np.ndarray, int | None],
    test: tuple[np.ndarray, int | None] | None = None,
) -> NgramModel:
    """Count an `order`-gram model on `train_ids` and attach it to each of `checkpoints`,
    mixed at the weight that fits the `validation` text (ids, characters) best under that
    checkpoint's network; say what the mixture does to it and to the `test` text."""
    models = {directory: load_checkpoint(directory, device).model for directory in checkpoints}
    vocab_size = next(iter(models.values())).config.vocab_size
    ngram = NgramModel.fit(train_ids, vocab_size, order)
    texts = {"validation": HeldOut(*validation, ngram)}
    if test is not None:
        texts["test"] = HeldOut(*test, ngram)
    for directory, model in models.items():
        network = {name: text.network(model, device) for name, text in texts.items()}
        weight = mixture_weight(network["validation"], texts["validation"].counted)
        attach_ngram(directory, ngram, weight)
        changes = [
            f"{name} {text.bits(network[name]):.4f} → "
            f"{text.bits(mix(network[name], text.counted, weight)):.4f}"
            for name, text in texts.items()
        ]
        say(
            f"{directory}: a {order}-gram model of the training text mixed in, the network's "
            f"weight {weight:.2f}; bits/char (each text read in one pass), network → "
            "mixture: " + ", ".join(changes)
        )
    return ngram
