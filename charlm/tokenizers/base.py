"""The tokenizer interface every tokenizer meets, built-in or plugin.

A tokenizer is trained on a book, turns text into integer ids and back, and saves itself as
plain JSON (never pickle) so a checkpoint says in readable form how text was cut.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np


class Tokenizer(ABC):
    """Turns text into ids and ids into text.

    Subclasses set `name` and `description`, and implement `train`, `encode`, `decode`,
    `vocab_size`, `get_state` and `from_state`. Override `stream_decoder` when the
    tokenizer can decode one token at a time more cheaply than the generic fallback.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def train(cls, text: str, **options: Any) -> Tokenizer:
        """Build a tokenizer whose vocabulary comes from `text`."""

    @abstractmethod
    def encode(self, text: str) -> np.ndarray | list[int]:
        """Ids for `text`: a list of ints or a 1-D integer NumPy array."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids; every id is in `range(vocab_size)`."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """A JSON-serialisable dict from which `from_state` rebuilds this tokenizer."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer saved with `get_state`."""

    def encode_array(self, text: str) -> np.ndarray:
        """`encode` as a 1-D int64 array, whatever the subclass returns."""
        return np.asarray(self.encode(text), dtype=np.int64).reshape(-1)

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        """A decoder that turns ids arriving one at a time into complete pieces of text.

        `context` holds the ids that came before (the prefix), so spacing and multi-token
        characters are decoded as they would be in the whole text.
        """
        return StreamDecoder(self, context)


class StreamDecoder:
    """Generic incremental decoding: decode everything, emit what is new and complete.

    Text ending in U+FFFD is held back, because with byte-level vocabularies that usually
    means a multi-byte character whose remaining bytes have not arrived yet.
    """

    def __init__(self, tokenizer: Tokenizer, context: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids = list(context)
        self._emitted = tokenizer.decode(self._ids)

    def step(self, token_id: int) -> str:
        """Add one id; return the text it completes (possibly empty)."""
        self._ids.append(int(token_id))
        text = self._tokenizer.decode(self._ids)
        if text.endswith("\ufffd") or not text.startswith(self._emitted):
            return ""
        new, self._emitted = text[len(self._emitted) :], text
        return new

    def flush(self) -> str:
        """Whatever is still held back at the end of generation."""
        text = self._tokenizer.decode(self._ids)
        new = text[len(self._emitted) :] if text.startswith(self._emitted) else ""
        self._emitted = text
        return new

    def feed(self, ids: Sequence[int]) -> Iterator[str]:
        """Step through several ids, yielding non-empty pieces."""
        for token_id in ids:
            piece = self.step(token_id)
            if piece:
                yield piece
