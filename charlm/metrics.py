"""Perplexity and bits per character: the numbers a language model is judged by."""

from __future__ import annotations

import math


def perplexity(mean_cross_entropy: float) -> float:
    """exp(mean cross-entropy per token in nats); inf when the loss overflows."""
    try:
        return math.exp(mean_cross_entropy)
    except OverflowError:
        return math.inf


def bits_per_character(total_nats: float, num_characters: int) -> float:
    """Total loss in bits spread over the characters of the text (not the tokens).

    Normalising by characters lets models with different tokenizers be compared.
    """
    return total_nats / math.log(2) / max(1, num_characters)
