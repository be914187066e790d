"""Drawing from the network mixed with its n-gram model (`charlm train --ngram`), as
`Sampler.score` scores: p(w | h) = λ·p_network(w | h) + (1 − λ)·p_ngram(w | h).

Each row keeps the last order − 1 tokens it read (the primed ids, then its own draws), the
n-gram model's history; the temperature and the other strategies then apply to the mixture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from charlm.models.ngram import NgramModel


def mixed_log_probs(
    ngram: NgramModel, weight: float, logits: torch.Tensor, histories: np.ndarray
) -> torch.Tensor:
    """log(λ·softmax(logits) + (1 − λ)·p_ngram(· | history)) for each row of `logits`
    (rows, vocab), λ = `weight`, with each row's n-gram history (rows, order − 1)."""
    counted = torch.as_tensor(
        ngram.next_probabilities(histories), dtype=torch.float32, device=logits.device
    )
    network = math.log(weight) + logits.float().log_softmax(-1)
    return torch.logaddexp(network, math.log1p(-weight) + counted.log())


def first_history(ngram: NgramModel, context: Sequence[int], rows: int) -> np.ndarray:
    """The n-gram histories (rows, order − 1) of `rows` rows that read `context`: its last
    order − 1 ids, -1 before its start."""
    history = np.full(ngram.order - 1, -1, dtype=np.int64)
    recent = np.asarray(context, dtype=np.int64)[len(context) - len(history) :]
    if len(history):
        history[len(history) - len(recent) :] = recent
    return np.tile(history, (rows, 1))


def read_on(histories: np.ndarray, tokens: torch.Tensor) -> np.ndarray:
    """The histories after each row read its token: the oldest one leaves."""
    if not histories.shape[1]:
        return histories
    drawn = tokens.detach().cpu().numpy().astype(np.int64)
    return np.concatenate([histories[:, 1:], drawn[:, None]], axis=1)


class NgramMixer:
    """The rows of one drawing: their n-gram histories, and the mixture of each step."""

    def __init__(self, ngram: NgramModel, weight: float, context: Sequence[int], rows: int):
        self._ngram, self._weight = ngram, weight
        self._history = first_history(ngram, context, rows)

    def mixed(self, logits: torch.Tensor) -> torch.Tensor:
        """The mixture's log-probabilities for each row of the network's `logits`."""
        return mixed_log_probs(self._ngram, self._weight, logits, self._history)

    def advance(self, tokens: torch.Tensor) -> None:
        """Each row read its drawn token."""
        self._history = read_on(self._history, tokens)
