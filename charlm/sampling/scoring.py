"""How well a model predicts a text: cross-entropy, perplexity and bits per character."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from charlm.metrics import bits_per_character, perplexity
from charlm.models import State
from charlm.models.losses import token_log_probs


@dataclass
class Score:
    """How well the model predicts a text.

    Every token of the text is predicted, the first one from the context the text was scored
    after. Bits per character divide the total loss by the characters of the text, not its
    tokens, so models with different tokenizers can be compared on the same text.
    """

    cross_entropy: float  # nats per token
    perplexity: float  # per token
    bits_per_character: float
    num_tokens: int
    num_characters: int

    @classmethod
    def from_total(cls, total_nats: float, num_tokens: int, num_characters: int) -> Score:
        mean = total_nats / num_tokens
        return cls(
            cross_entropy=mean,
            perplexity=perplexity(mean),
            bits_per_character=bits_per_character(total_nats, num_characters),
            num_tokens=num_tokens,
            num_characters=num_characters,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def total_loss(
    model: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    state: State | None,
    chunk_len: int,
    device: torch.device,
    labels: torch.Tensor | None = None,
) -> float:
    """Summed cross-entropy (nats) of `targets` given `inputs` (`token_log_probs`)."""
    return -float(token_log_probs(model, inputs, targets, state, chunk_len, device, labels).sum())
