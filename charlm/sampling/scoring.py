"""How well a model predicts a text: cross-entropy, perplexity and bits per character."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from charlm.metrics import bits_per_character, perplexity
from charlm.models import State


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
    """Summed cross-entropy (nats) of `targets` given `inputs`, the state carried in chunks.

    `inputs[i]` is the token before `targets[i]`; chunking bounds memory (one chunk's logits at
    a time) without changing the result, because the state flows from chunk to chunk.
    `labels` (1,) conditions a labelled model.
    """
    total = torch.zeros((), dtype=torch.float64, device=device)
    given = {} if labels is None else {"labels": labels}
    for start in range(0, len(targets), chunk_len):
        x = torch.as_tensor(inputs[start : start + chunk_len], device=device).unsqueeze(0)
        y = torch.as_tensor(targets[start : start + chunk_len], device=device)
        logits, state = model(x, state, **given)  # (1, chunk, vocab)
        total += F.cross_entropy(logits[0].float(), y, reduction="sum").double()
    return float(total.item())
