"""A prompt read back as the model scores it: pieces of text with their log-probabilities.

What a completion that echoes its prompt with `logprobs` reports before the tokens it draws
(OpenAI's legacy completions; evaluation harnesses send `echo`, `logprobs` and `max_tokens: 0`
to score a text). The network reads what drawing primes it on (`Sampler.start`), from its
cold state: a model of examples reads its start token first, so every token of the prompt is
predicted; a model of continuous text reads the prompt alone, so nothing predicts its first
token, and the piece that holds it has neither probability nor alternatives (OpenAI's null).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from charlm.sampling.drawing import Piece
from charlm.tokenizers import Tokenizer

Alternatives = tuple[tuple[str, float], ...]


def predicted(
    log_probs: torch.Tensor, targets: Sequence[int], top: int, name: Callable[[int], str]
) -> tuple[list[float], list[Alternatives]]:
    """Each target's log-probability and the `top` likeliest tokens at its position (named by
    `name`, most likely first), from `log_probs` (positions, vocab), which predict `targets`
    in order."""
    wanted = torch.as_tensor(targets, device=log_probs.device).unsqueeze(1)
    chosen = log_probs.gather(1, wanted).squeeze(1).tolist()
    if top == 0:
        return chosen, [()] * len(chosen)
    best = log_probs.topk(min(top, log_probs.shape[-1]), dim=-1)
    alternatives = [
        tuple((name(i), v) for i, v in zip(ids, values, strict=True))
        for ids, values in zip(best.indices.tolist(), best.values.tolist(), strict=True)
    ]
    return chosen, alternatives


def prompt_pieces(
    tokenizer: Tokenizer,
    context_ids: Sequence[int],
    chosen: Sequence[float],
    alternatives: Sequence[Alternatives],
) -> list[Piece]:
    """`context_ids` (the prompt's tokens) as pieces of text, as a drawing makes them: a token
    that completes no text (part of a character) joins the next piece, its log-probability
    added, the piece's alternatives those where it begins. `chosen` and `alternatives` cover
    the last len(chosen) tokens; a piece holding an earlier token has neither (None, ())."""
    unscored = len(context_ids) - len(chosen)
    decoder = tokenizer.stream_decoder()
    pieces: list[Piece] = []
    log_prob: float | None = 0.0
    top: Alternatives | None = None
    for position, token in enumerate(context_ids):
        scored = position - unscored
        if top is None:  # the alternatives where the coming piece begins
            top = alternatives[scored] if scored >= 0 else ()
        log_prob = None if scored < 0 or log_prob is None else log_prob + chosen[scored]
        text = decoder.step(token)
        if text:
            pieces.append(Piece(0, text, log_prob, top))
            log_prob, top = 0.0, None
    text = decoder.flush()
    if text:
        pieces.append(Piece(0, text, log_prob, top or ()))
    return pieces
