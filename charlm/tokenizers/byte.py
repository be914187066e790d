"""Byte tokenizer: the UTF-8 bytes of the text, 256 ids, nothing is ever unknown."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

import numpy as np

from charlm.errors import TokenizerError

from .base import StreamDecoder, Tokenizer


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: any text encodes, and decoding gives it back exactly."""

    name = "byte"
    description = "UTF-8 bytes: 256 tokens, never an unknown one, about 1-3 tokens per character"
    # Declared empty, so check_options refuses every key: on the command line that is a
    # usage error before any book is read, and `train` refuses them by the same check.
    options = {}

    @classmethod
    def train(cls, text: str, **options: Any) -> ByteTokenizer:
        cls.check_options(options)
        return cls()

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> np.ndarray:
        # "surrogatepass" keeps lone surrogates (which Python strings may hold) encodable.
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)

    def encode_with_policy(self, text: str, unknown: str) -> np.ndarray:
        return self.encode_array(text)

    def decode(self, ids: Sequence[int]) -> str:
        data = np.asarray(ids, dtype=np.int64)
        if data.size and (data.min() < 0 or data.max() > 255):
            raise TokenizerError("byte ids must be in range(256)")
        return data.astype(np.uint8).tobytes().decode("utf-8", "replace")

    def token_text(self, token: int) -> str:
        return f"<0x{token:02X}>"  # a byte above 127 alone decodes to the replacement character

    def get_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ByteTokenizer:
        return cls()

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        return _ByteStreamDecoder(context)


class _ByteStreamDecoder(StreamDecoder):
    """Python's incremental UTF-8 decoder holds the bytes of an unfinished character back."""

    def __init__(self, context: Sequence[int] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # The prefix was shown as typed; only a character it leaves unfinished carries over.
        self._decoder.decode(bytes(list(context)))

    def step(self, token_id: int) -> str:
        return self._decoder.decode(bytes((int(token_id),)))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
