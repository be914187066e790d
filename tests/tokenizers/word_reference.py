"""The word tokenizer's encoder as it was before charlm/tokenizers/wordscan.py: a regular
expression and a Python loop per token. Kept here as the reference the array encoder must
match id for id (tests/tokenizers/test_word_encoder.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from charlm.tokenizers.base import unknown_error
from charlm.tokenizers.word import NEWLINE, NOSPACE, SPACE, SPLITS, UNK, WordTokenizer, _Spacing


def _pieces(text: str, split: str) -> Iterator[tuple[str, bool]]:
    """(token, preceded by a space) for each token of `text`."""
    end = 0
    for match in SPLITS[split].finditer(text):
        yield match.group(), match.start() > end
        end = match.end()


def reference_encode(tokenizer: WordTokenizer, text: str, unknown: str = "unk") -> np.ndarray:
    if tokenizer.lowercase:
        text = text.lower()
    stoi, unk = tokenizer.stoi, tokenizer.stoi[UNK]
    space, nospace = stoi[SPACE], stoi[NOSPACE]
    ids: list[int] = []
    missing: list[str] = []
    spacing = _Spacing(tokenizer.split)
    for token, spaced in _pieces(text, tokenizer.split):
        token_id = stoi.get(token, unk)
        if token_id == unk and token != UNK:
            missing.append(token)
            if unknown == "skip":
                continue
        if token == NEWLINE or spacing.previous == NEWLINE or spacing.previous is None:
            spaced = False  # indentation and trailing spaces are not kept
        if spaced != spacing.spaced(token):
            ids.append(space if spaced else nospace)
        ids.append(token_id)
        spacing.advance(token)
    if missing and unknown == "error":
        raise unknown_error("word", missing)
    return np.array(ids, dtype=np.int64)
