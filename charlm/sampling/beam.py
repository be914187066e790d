"""Beam search: the most probable continuation of a fixed length, as far as a beam can see.

Greedy decoding commits to the single best token at each step; a likely first token can lead
into a region where everything after it is unlikely. Beam search keeps the `width` best
partial continuations (by total log-probability) at every step and extends them all at once,
as one batch through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from charlm.models import State
from charlm.sampling.state import select_rows

# (tokens (rows,), state) -> (logits (rows, vocab), state): one step of the network.
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


@dataclass
class Beam:
    """One finished hypothesis."""

    token_ids: list[int]
    token_log_probs: list[float]

    @property
    def log_probability(self) -> float:
        return sum(self.token_log_probs)


def beam_search(
    step: StepFn, logits: torch.Tensor, state: State, length: int, width: int
) -> list[Beam]:
    """The best `width` continuations of `length` tokens, most probable first.

    `logits` (1, vocab) and `state` are those after the prefix. Log-probabilities are the
    model's own (temperature 1).
    """
    if length == 0:
        return [Beam([], [])]
    log_probs = logits.float().log_softmax(dim=-1)  # (1, vocab)
    vocab = log_probs.shape[-1]
    scores, tokens = log_probs[0].topk(min(width, vocab))  # (beams,)
    history = tokens.unsqueeze(1)  # (beams, steps)
    history_lp = scores.unsqueeze(1)  # (beams, steps)
    state = select_rows(state, torch.zeros_like(tokens))
    for _ in range(length - 1):
        logits, state = step(tokens, state)
        log_probs = logits.float().log_softmax(dim=-1)  # (beams, vocab)
        candidates = (scores.unsqueeze(1) + log_probs).flatten()  # (beams * vocab,)
        scores, flat = candidates.topk(min(width, candidates.numel()))
        parents, tokens = flat // vocab, flat % vocab
        state = select_rows(state, parents)
        history = torch.cat([history[parents], tokens.unsqueeze(1)], dim=1)
        token_lp = log_probs[parents, tokens].unsqueeze(1)
        history_lp = torch.cat([history_lp[parents], token_lp], dim=1)
    return [Beam(ids, lps) for ids, lps in zip(history.tolist(), history_lp.tolist(), strict=True)]
