"""Hand-made models and tokenizers for sampler tests, with distributions known exactly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from charlm.checkpoint import save_checkpoint
from charlm.data import LabelSet
from charlm.models import RNNLM, ModelConfig, build_model
from charlm.sampling import Sampler
from charlm.tokenizers import Tokenizer
from charlm.tokenizers.char import CharTokenizer


class BigramLM(nn.Module):
    """A language model whose next-token distribution depends on the current token only.

    It has the RNNLM interface, `forward(tokens, state) -> (logits, state)` and `begin_state`,
    so the sampler cannot tell it apart; its state (num_layers=1, batch, 1) counts tokens read.
    """

    def __init__(self, probs: Sequence[Sequence[float]]) -> None:
        super().__init__()
        table = torch.tensor(probs, dtype=torch.float32)  # (vocab, vocab): row = current token
        assert torch.allclose(table.sum(dim=1), torch.ones(len(table)))
        self.register_buffer("log_table", table.log())

    def begin_state(self, batch_size: int, device: Any = None) -> torch.Tensor:
        return torch.zeros(1, batch_size, 1, device=device)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        if state is None:
            state = self.begin_state(tokens.shape[0], tokens.device)
        return self.log_table[tokens], state + tokens.shape[1]  # (batch, seq, vocab)


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens: one character can take several tokens."""

    name = "test-bytes"
    description = "bytes, for tests"

    @classmethod
    def train(cls, text: str, **options: Any) -> ByteTokenizer:
        return cls()

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return 256

    def get_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ByteTokenizer:
        return cls()


def cycle_table(
    order: Sequence[int], vocab_size: int, certainty: float = 0.97
) -> list[list[float]]:
    """A bigram table that follows `order` (a cycle of ids) with probability `certainty`."""
    rest = (1 - certainty) / (vocab_size - 1)
    table = [[rest] * vocab_size for _ in range(vocab_size)]
    for current, following in zip(order, list(order[1:]) + [order[0]], strict=True):
        table[current][following] = certainty
    for row in table:  # tokens outside the cycle: uniform
        if max(row) == rest:
            row[:] = [1 / vocab_size] * vocab_size
    return table


def save_tiny_checkpoint(directory: Path, text: str) -> Path:
    """An untrained two-layer LSTM with a character vocabulary from `text`, saved."""
    tokenizer = CharTokenizer.train(text)
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=2)
    return save_checkpoint(directory, RNNLM(config), tokenizer)


def untrained_names(task: str = "lm") -> Sampler:
    """An untrained model of names under the labels ab and xyz, letters ABXYZabxyz: random,
    but a real labelled model (or, with task="classify", a classifier), and fast."""
    letters = CharTokenizer(list("ABXYZabxyz"))
    torch.manual_seed(0)
    config = ModelConfig(
        letters.vocab_size + 1, hidden_size=16, embed_size=8, num_layers=1, end_token=True,
        num_labels=2, task=task,
    )  # fmt: skip
    return Sampler(build_model(config), letters, label_set=LabelSet(["ab", "xyz"], [28, 40]))
