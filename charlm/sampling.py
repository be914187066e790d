"""Drawing text from a trained model, and scoring text with it.

The prefix goes through the network in one forward call, which leaves the hidden state
"primed"; after that each new token costs one step of the network on one token, carrying the
state forward. The prefix is never run again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from charlm.checkpoint import load_checkpoint
from charlm.device import resolve_device
from charlm.metrics import bits_per_character, perplexity
from charlm.models import RNNLM, State, convert
from charlm.tokenizers import Tokenizer

# With an empty prefix the network is primed on a newline, i.e. asked to start a paragraph.
EMPTY_PREFIX_PRIMER = "\n"


@dataclass
class Score:
    """How well the model predicts a text."""

    cross_entropy: float  # nats per token
    perplexity: float  # per token
    bits_per_character: float
    num_tokens: int
    num_characters: int


def sample_next(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One token id per row of `logits` (batch, vocab); temperature 0 means argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    # Inverse-CDF draw: a cumulative sum and a binary search, cheaper than torch.multinomial.
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device)
    u = u * cdf[..., -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


class Sampler:
    """Generate, stream and score text with a trained model."""

    def __init__(self, model: RNNLM, tokenizer: Tokenizer, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto") -> Sampler:
        resolved = resolve_device(device)
        checkpoint = load_checkpoint(path, resolved)
        return cls(checkpoint.model, checkpoint.tokenizer, resolved)

    def generate(
        self,
        prefix: str = "",
        length: int = 200,
        temperature: float = 1.0,
        seed: int | None = None,
        unknown: str | None = None,
        allow_unk: bool = False,
    ) -> str:
        """`prefix` followed by `length` new tokens of text."""
        return prefix + "".join(
            self.stream(prefix, length, temperature, seed, unknown=unknown, allow_unk=allow_unk)
        )

    @torch.inference_mode()
    def stream(
        self,
        prefix: str = "",
        length: int = 200,
        temperature: float = 1.0,
        seed: int | None = None,
        unknown: str | None = None,
        allow_unk: bool = False,
    ) -> Iterator[str]:
        """The new text only, piece by piece as each token is drawn.

        `unknown` says what to do with prefix pieces outside the vocabulary (error, skip,
        unk; default: the tokenizer's own rule). Special tokens such as `<unk>` are never
        drawn, unless `allow_unk` lets `<unk>` through.
        """
        _check_sampling_args(length, temperature)
        primer = (prefix, unknown) if prefix else (EMPTY_PREFIX_PRIMER, "skip")
        prefix_ids = self.tokenizer.encode_array(*primer).tolist()
        banned = self.tokenizer.banned_ids(allow_unk)
        if not prefix_ids:  # e.g. a vocabulary without newline and an empty prefix
            prefix_ids = [0]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else torch.seed())
        decoder = self.tokenizer.stream_decoder(prefix_ids if prefix else ())

        logits, state = self._prime(prefix_ids)
        for i in range(length):
            logits[:, banned] = float("-inf")  # never draw <unk> or other non-text tokens
            token = sample_next(logits, temperature, generator)  # (1,)
            piece = decoder.step(int(token))
            if piece:
                yield piece
            if i + 1 < length:
                logits, state = self._step(token, state)
        tail = decoder.flush()
        if tail:
            yield tail

    def _prime(self, ids: list[int]) -> tuple[torch.Tensor, State]:
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, prefix)
        logits, state = self.model(tokens)  # the whole prefix in one forward call
        return logits[:, -1], state  # (1, vocab)

    def _step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self.model(token.view(1, 1), state)
        return logits[:, -1], state

    @torch.inference_mode()
    def score(self, text: str, chunk_len: int = 1024) -> Score:
        """Cross-entropy, perplexity and bits per character of `text`, state carried in chunks."""
        ids = self.tokenizer.encode_array(text)
        if len(ids) < 2:
            raise ValueError("scoring needs a text of at least two tokens")
        state, total = None, 0.0
        for start in range(0, len(ids) - 1, chunk_len):
            x = torch.as_tensor(ids[start : start + chunk_len], device=self.device)
            y = torch.as_tensor(ids[start + 1 : start + 1 + chunk_len], device=self.device)
            x = x[: len(y)]
            logits, state = self.model(x.unsqueeze(0), state)
            total += F.cross_entropy(logits[0], y, reduction="sum").item()
        count = len(ids) - 1
        return Score(
            cross_entropy=total / count,
            perplexity=perplexity(total / count),
            bits_per_character=bits_per_character(total, len(text)),
            num_tokens=count,
            num_characters=len(text),
        )


def _check_sampling_args(length: int, temperature: float) -> None:
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")


def load(path: str | os.PathLike, device: str = "auto", impl: str | None = None) -> Sampler:
    """Load a checkpoint directory as a `Sampler`.

    `impl` ("torch" or "scratch") recomputes the recurrent layers with that implementation
    instead of the one that trained the model, e.g. "torch" to sample a scratch model fast.
    """
    sampler = Sampler.from_checkpoint(path, device)
    if impl is not None:
        sampler.model = convert(sampler.model, impl)
    return sampler
