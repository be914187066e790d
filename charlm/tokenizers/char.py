"""Character tokenizer: one id per Unicode code point seen in the book."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from charlm.errors import TokenizerError, UnknownTokenError

from .base import StreamDecoder, Tokenizer


def _code_points(text: str) -> np.ndarray:
    # UTF-32 gives one fixed-width unit per code point, so NumPy can work on the whole text
    # at once instead of a Python loop per character.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharTokenizer(Tokenizer):
    """Unicode code points; the vocabulary is every character of the training text."""

    name = "char"
    description = "one token per Unicode character (code point) seen in the book"

    def __init__(self, chars: Sequence[str]) -> None:
        if not chars:
            raise TokenizerError("a character vocabulary needs at least one character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("a character vocabulary must be distinct single characters")
        self.chars = list(chars)
        self._points = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        # Sorted code points let `encode` map a whole array with one searchsorted call.
        self._order = np.argsort(self._points, kind="stable")
        self._sorted_points = self._points[self._order]

    @classmethod
    def train(cls, text: str, **options: Any) -> CharTokenizer:
        if options:
            raise TokenizerError(f"char tokenizer has no option {sorted(options)[0]!r}")
        points = np.unique(_code_points(text))
        return cls([chr(p) for p in points])

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        points = _code_points(text)
        slots = np.searchsorted(self._sorted_points, points)
        slots = np.minimum(slots, len(self._sorted_points) - 1)
        known = self._sorted_points[slots] == points
        if not known.all():
            unseen = sorted({chr(p) for p in points[~known]})
            shown = ", ".join(repr(c) for c in unseen[:10])
            more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
            raise UnknownTokenError(
                f"the model has never seen the character(s) {shown}{more}; "
                "remove them from the text"
            )
        return self._order[slots].astype(np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        chars = self.chars
        return "".join(chars[i] for i in ids)

    def get_state(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        chars = state.get("chars") if isinstance(state, dict) else None
        if not isinstance(chars, str):
            raise TokenizerError("char tokenizer state needs a string under 'chars'")
        return cls(list(chars))

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        return _CharStreamDecoder(self)


class _CharStreamDecoder(StreamDecoder):
    """Every character id is complete text on its own, so decoding is a lookup."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        self._chars = tokenizer.chars

    def step(self, token_id: int) -> str:
        return self._chars[token_id]

    def flush(self) -> str:
        return ""
