"""Output layers: the full softmax's linear layer, or an adaptive softmax for big vocabularies.

A word-level model's output layer dominates its cost: 2·H·V multiply-adds per token, against
8·H·(I+H) per recurrent layer (with V = 33k words and H = 200 it is > 90% of the FLOPs).
The adaptive softmax (Grave et al. 2017) scores the frequent words in a small "head"
softmax, which also holds one entry per "cluster" of rarer words; a rare word's probability
is its cluster's probability times its probability inside the cluster, computed from a
hidden vector projected down by `div_value` per cluster. Training then only evaluates the
clusters the batch's targets fall in. The ids must be ordered most frequent first, which
charlm's word and subword vocabularies are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from charlm.errors import ConfigError

SOFTMAXES = ("full", "adaptive")
# Where the clusters start: the 2,000 most frequent words in the head, the next 8,000 in a
# cluster, the rest in another (about the split of Grave et al. for vocabularies of 10k-100k).
DEFAULT_CUTOFFS = (2000, 10000)


def default_cutoffs(vocab_size: int) -> list[int]:
    """The default cutoffs that fall inside a vocabulary of `vocab_size` tokens."""
    return [c for c in DEFAULT_CUTOFFS if c < vocab_size]


class AdaptiveHead(nn.Module):
    """`nn.AdaptiveLogSoftmaxWithLoss` with charlm's head interface.

    Calling it gives log-probabilities over the whole vocabulary (what a sampler needs: their
    softmax is the distribution, as it is for logits); `nll` gives the loss of given targets
    and computes only the clusters they fall in (what training needs).
    """

    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: Sequence[int]) -> None:
        super().__init__()
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(
            hidden_size, vocab_size, list(cutoffs), div_value=4.0, head_bias=True
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) → log-probabilities (..., vocab)."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        return self.asm.log_prob(flat).view(*hidden.shape[:-1], -1)

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """−log p(target) in nats for every position: (..., hidden), (...) → (...)."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        return -self.asm(flat, targets.reshape(-1)).output.view_as(targets)


def parse_cutoffs(text: str) -> list[int]:
    """`2000,10000` as [2000, 10000]."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{text!r} is not a comma-separated list of integers") from None
