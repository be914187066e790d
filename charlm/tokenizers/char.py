"""Character tokenizer: one id per Unicode code point seen in the book."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from charlm.errors import TokenizerError

from .base import Option, StreamDecoder, Tokenizer, unknown_error

UNK = "<unk>"
# `<unk>` decodes to the replacement character, so a character model's output stays one
# character per token.
UNK_TEXT = "\ufffd"
# Text is encoded in slices of this many characters: a slice's buffers stay in the CPU
# cache, a 100 MB book never needs a 400 MB UTF-32 copy, and most slices are pure ASCII.
CHUNK_CHARS = 1 << 16


def code_points(text: str) -> np.ndarray:
    """The code points of `text` as a uint32 array, without a Python loop per character."""
    # UTF-32 gives one fixed-width unit per code point, so NumPy can work on the whole text.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _chunk_points(text: str) -> np.ndarray:
    # Most book text is ASCII, which encodes to one byte per character: 4x less to write and
    # read than UTF-32. `isascii` is a flag check in CPython, so the test costs nothing.
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return code_points(text)


def _character_counts(text: str, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Distinct code points of `text` and how often each occurs, counted slice by slice so
    that a 100 MB book never needs its whole UTF-32 copy (400 MB) at once."""
    totals: dict[int, int] = {}
    for start in range(0, len(text), chunk):
        points, counts = np.unique(_chunk_points(text[start : start + chunk]), return_counts=True)
        for point, count in zip(points.tolist(), counts.tolist()):
            totals[point] = totals.get(point, 0) + count
    points = np.array(sorted(totals), dtype=np.int64)
    return points, np.array([totals[p] for p in points.tolist()], dtype=np.int64)


def _count_into(counts: dict[int, int], points: np.ndarray) -> None:
    for point, count in zip(*(a.tolist() for a in np.unique(points, return_counts=True))):
        counts[point] = counts.get(point, 0) + count


class CharTokenizer(Tokenizer):
    """Unicode code points; the vocabulary is every character of the training text."""

    name = "char"
    description = "one token per Unicode character (code point) seen in the book"
    options = {
        "lowercase": Option(bool, False, "lowercase the text before anything else"),
        "min_freq": Option(int, 1, "characters seen fewer times become <unk> (implies unk)", low=1),
        "unk": Option(bool, False, "add an <unk> token for characters outside the vocabulary"),
    }

    def __init__(self, chars: Sequence[str], *, unk: bool = False, lowercase: bool = False):
        if not chars:
            raise TokenizerError("a character vocabulary needs at least one character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("a character vocabulary must be distinct single characters")
        self.chars = list(chars)
        self.has_unk = unk
        self.lowercase = lowercase
        self._itos = self.chars + ([UNK_TEXT] if unk else [])
        points = np.array([ord(c) for c in self.chars], dtype=np.int64)
        # A table indexed by code point turns encoding into one vectorised lookup; -1 marks
        # characters outside the vocabulary.
        # It covers at least all of Latin-1, so one-byte chunks never need clipping.
        self._table = np.full(max(int(points.max()) + 2, 256), -1, dtype=np.int64)
        self._table[points] = np.arange(len(points))

    @classmethod
    def train(cls, text: str, **options: Any) -> CharTokenizer:
        opts = {key: option.default for key, option in cls.options.items()}
        opts.update(cls.check_options(options))
        if opts["lowercase"]:
            text = text.lower()
        points, counts = _character_counts(text)
        kept = points[counts >= opts["min_freq"]]
        unk = opts["unk"] or opts["min_freq"] > 1
        if len(kept) == 0:
            raise TokenizerError(f"no character occurs {opts['min_freq']} times; lower min_freq")
        return cls([chr(p) for p in kept], unk=unk, lowercase=opts["lowercase"])

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def unk_id(self) -> int | None:
        return len(self.chars) if self.has_unk else None

    def encode(self, text: str) -> np.ndarray:
        return self.encode_with_policy(text, "unk" if self.has_unk else "error")

    def encode_with_policy(self, text: str, unknown: str) -> np.ndarray:
        if self.lowercase:
            text = text.lower()
        out = np.empty(len(text), dtype=np.int64)
        kept = 0
        unseen: dict[int, int] = {}  # code point → count, gathered over the whole text
        for start in range(0, len(text), CHUNK_CHARS):
            points = _chunk_points(text[start : start + CHUNK_CHARS])
            ids = out[kept : kept + len(points)]
            np.take(self._table, self._in_table(points), out=ids)  # the whole chunk at once
            if ids.min() < 0:  # rare: some character is outside the vocabulary
                if unknown == "error":
                    _count_into(unseen, points[ids < 0])
                ids = self._unknown(ids, unknown)
                out[kept : kept + len(ids)] = ids
            kept += len(ids)
        if unseen:
            counts = {chr(point): count for point, count in unseen.items()}
            raise unknown_error("character", counts, self.has_unk)
        return out[:kept]

    def _in_table(self, points: np.ndarray) -> np.ndarray:
        """`points` with code points beyond the table moved to its last entry, which is
        always -1 (unknown); the original points stay intact for naming them."""
        if points.dtype == np.uint32 and points.max() >= len(self._table):
            return np.minimum(points, len(self._table) - 1)
        return points

    def _unknown(self, ids: np.ndarray, unknown: str) -> np.ndarray:
        unknown_at = ids < 0
        if unknown == "skip":
            return ids[~unknown_at].copy()
        if unknown == "unk":
            ids[unknown_at] = self.unk_id
        return ids  # "error": raised once the whole text has been read

    def decode(self, ids: Sequence[int]) -> str:
        itos = self._itos
        return "".join([itos[i] for i in ids])

    def get_state(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars), "unk": self.has_unk, "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        chars = state.get("chars") if isinstance(state, dict) else None
        if not isinstance(chars, str):
            raise TokenizerError("char tokenizer state needs a string under 'chars'")
        return cls(
            list(chars),
            unk=bool(state.get("unk", False)),
            lowercase=bool(state.get("lowercase", False)),
        )

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        return _CharStreamDecoder(self)


class _CharStreamDecoder(StreamDecoder):
    """Every character id is complete text on its own, so decoding is a lookup."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        self._itos = tokenizer._itos

    def step(self, token_id: int) -> str:
        return self._itos[token_id]

    def flush(self) -> str:
        return ""
