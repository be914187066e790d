"""A prompt read back as the model scores it: pieces of text with their log-probabilities.

What a completion that echoes its prompt with `logprobs` reports before the tokens it draws
(OpenAI's legacy completions; evaluation harnesses send `echo`, `logprobs` and `max_tokens: 0`
to score a text). The network reads what drawing primes it on (`Sampler.start`), from its
cold state: a model of examples reads its start token first, so every token of the prompt is
predicted; a model of continuous text reads the prompt alone, so nothing predicts its first
token, and the piece that holds it has neither probability nor alternatives (OpenAI's null).
"""

from __future__ import annotations

from collections.abc import Sequence

from charlm.sampling.drawing import Alternatives, Piece
from charlm.tokenizers import Tokenizer


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
