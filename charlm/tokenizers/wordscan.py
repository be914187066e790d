"""The word tokenizer's encoder as array operations: the ids of word.py's rules, many times faster.

`WordTokenizer` used to walk the text with its regular expression and a Python loop per token
(about 8 MB/s). This module computes the same ids with NumPy:

1. The text becomes an array of code points, and each gets its class — word character, space,
   line break, anything else — exactly as Python's `re` classes it for `\\w` and `\\s` (each
   distinct character of the text is asked of `re` itself), plus the marks the spacing rule
   needs (opening or closing punctuation, `"`, a joiner `'’-`).
2. The tokens that TOKEN_RE (or SPACES_RE) would match are found as runs and single
   characters: a word is a run of word characters in which a single joiner may stand between
   two of them; `<unk>` is one token; any other character that is not a space is a token.
3. Each token is looked up in an open-addressing table of the vocabulary by a polynomial hash
   of its code points (base 129, from prefix sums). For a token of at most 9 ASCII characters
   the hash is its base-129 numeral, so equal hashes and lengths mean equal words; any other
   token found is compared with its word character by character. A token the table lacks is
   outside the vocabulary; a mismatch falls back to a dict lookup. No token can get a wrong id.
4. The spacing rule (word.py's `_spaced` with its open-quote state) runs over the whole token
   sequence at once, and `<space>`/`<nospace>` markers go where the text differs from it.

The text is processed in blocks cut at whitespace, so memory stays proportional to a block.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np

# A character's class in its low two bits, and the marks of the spacing rule above them.
OTHER, WORD, SPACE, NEWLINE = 0, 1, 2, 3
CLASS = 3
JOINER, QUOTE, NO_SPACE_BEFORE, NO_SPACE_AFTER = 4, 8, 16, 32
UNSEEN = 255  # a character not classed yet
JOINERS = "'’-"  # between word characters, part of the word: don't, well-known
BLOCK_CHARS = 1 << 20  # about 50 MB of temporary arrays per block
UNK_TEXT = "<unk>"
BASE = 129  # a token of at most EXACT_CHARS ASCII characters is its base-129 numeral (< 2**64)
EXACT_CHARS = 9
_FINALIZER = np.uint64(0x9E3779B97F4A7C15)  # spreads a hash over the table's slots
_WORD_RE, _SPACE_RE = re.compile(r"\w"), re.compile(r"\s")


def code_points(text: str) -> np.ndarray:
    """`text` as one uint32 per character (lone surrogates included, as Python counts them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i modulo 2**64 for i < n (from a table whose size is a power of two,
    so that the few sizes a text needs are each computed once)."""
    up, down = _power_table(1 << max(0, n - 1).bit_length())
    return up[:n], down[:n]


@cache
def _power_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    up, down = np.ones(size, np.uint64), np.ones(size, np.uint64)
    # Integer products wrap around: arithmetic modulo 2**64, as wanted.
    np.cumprod(np.full(size - 1, BASE, np.uint64), out=up[1:])
    np.cumprod(np.full(size - 1, pow(BASE, -1, 2**64), np.uint64), out=down[1:])
    up.flags.writeable = down.flags.writeable = False  # shared by every caller: read only
    return up, down


def polynomial_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """sum(codes[s + i] * BASE**i) mod 2**64 of each token [s, e), from one prefix sum."""
    up, down = _powers(len(codes) + 1)
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.multiply(codes, up[:-1], out=prefix[1:], casting="unsafe")
    np.cumsum(prefix[1:], out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * down[starts]


class Scanner:
    """Classes and marks of characters for one spacing rule, as `re` sees them."""

    def __init__(self, no_space_before: str, no_space_after: str) -> None:
        self._marks: dict[str, int] = {}
        for mark, chars in [(QUOTE, '"'), (JOINER, JOINERS), (NO_SPACE_BEFORE, no_space_before),
                            (NO_SPACE_AFTER, no_space_after)]:  # fmt: skip
            for char in chars:
                self._marks[char] = self._marks.get(char, 0) | mark
        # Every code point's flags, filled in as texts bring characters not seen before.
        self._table = np.full(sys.maxunicode + 1, UNSEEN, dtype=np.uint8)
        self._learn(np.arange(128))

    def _learn(self, codes: np.ndarray) -> None:
        for code in codes.tolist():
            char = chr(code)
            if char == "\n":
                kind = NEWLINE
            elif _WORD_RE.match(char):
                kind = WORD
            elif _SPACE_RE.match(char):
                kind = SPACE
            else:
                kind = OTHER
            self._table[code] = kind | self._marks.get(char, 0)

    def flags(self, codes: np.ndarray) -> np.ndarray:
        """The class and marks of every code point."""
        flags = self._table[codes]
        new = flags == UNSEEN
        if new.any():
            self._learn(np.unique(codes[new]))
            flags = self._table[codes]
        return flags


def token_bounds(codes: np.ndarray, flags: np.ndarray, split: str) -> tuple[np.ndarray, ...]:
    """(starts, ends) of the tokens SPLITS[split] matches in the text of `codes`."""
    kind = flags & CLASS
    newline = kind == NEWLINE
    if split == "spaces":  # r"\n|[^\s]+"
        body = (kind == WORD) | (kind == OTHER)
        return _runs(body, newline, newline.copy())
    # r"<unk>|\n|\w+(?:['’-]\w+)*|[^\w\s]"
    word = kind == WORD
    single = kind == OTHER
    unk = _find(codes, UNK_TEXT)
    for i in range(1, 4):
        word[unk + i] = False  # the letters of a literal <unk> belong to it
    inner = (flags[1:-1] & JOINER).astype(bool) & word[:-2] & word[2:]
    word[1:-1] |= inner
    single[1:-1] &= ~inner
    single_start, single_end = single, single.copy()
    single_start[unk + 4] = False  # a literal <unk> runs from its "<" to its ">"
    single_end[unk] = False
    return _runs(word, single_start | newline, single_end | newline)


def _runs(run: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
    """Token starts and ends: every maximal run of `run`, and the marks already in starts/ends."""
    starts[0] |= run[0]
    starts[1:] |= run[1:] & ~run[:-1]
    ends[-1] |= run[-1]
    ends[:-1] |= run[:-1] & ~run[1:]
    return np.flatnonzero(starts), np.flatnonzero(ends) + 1


def _find(codes: np.ndarray, text: str) -> np.ndarray:
    """Where `text` begins in `codes` (for a text that cannot overlap itself)."""
    pattern = code_points(text)
    at = np.flatnonzero(codes[: max(0, len(codes) - len(pattern) + 1)] == pattern[0])
    for i in range(1, len(pattern)):
        at = at[codes[at + i] == pattern[i]]
    return at


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of range(s, s + n) for each start s and length n."""
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(int(lengths.sum()))


class Tokens(NamedTuple):
    """The tokens of a text: their ids, and what the spacing rule needs to know of each."""

    ids: np.ndarray  # int64; unknown tokens have the <unk> id
    missing: np.ndarray  # outside the vocabulary (a literal <unk> is not missing)
    spaced: np.ndarray  # preceded by a space in the text
    flags: np.ndarray  # the class and marks of its first character (newline, quote, ...)

    @classmethod
    def concatenate(cls, parts: Sequence[Tokens]) -> Tokens:
        return cls(*(np.concatenate(column) for column in zip(*parts)))

    def select(self, keep: np.ndarray) -> Tokens:
        return Tokens(*(column[keep] for column in self))


class WordIndex:
    """A word vocabulary laid out for array lookups, and the encoder that uses it."""

    def __init__(self, itos: Sequence[str], split: str, unk_id: int, scanner: Scanner) -> None:
        self.split, self.unk_id, self.scanner = split, unk_id, scanner
        self.stoi = {word: i for i, word in enumerate(itos)}
        words = [word for word in itos if word]
        self._codes = code_points("".join(words))
        lengths = np.array([len(word) for word in words], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        hashes = polynomial_hashes(self._codes, starts, starts + lengths)
        bits = max(4, (2 * len(words)).bit_length())  # a table at most half full
        self._shift = np.uint64(64 - bits)
        slots = _place(self._slots(hashes), 2**bits)
        self._id = np.full(2**bits, -1, dtype=np.int64)
        self._id[slots] = [self.stoi[word] for word in words]
        self._hash = np.zeros(2**bits, dtype=np.uint64)
        self._hash[slots] = hashes
        self._start = np.zeros(2**bits, dtype=np.int64)
        self._start[slots] = starts
        self._length = np.zeros(2**bits, dtype=np.int64)
        self._length[slots] = lengths
        # Words whose hash is their base-129 numeral with no zero digit: a token of at most
        # EXACT_CHARS ASCII characters with the same hash is that word.
        codes = self._codes
        zero_or_high = np.add.reduceat((codes == 0) | (codes >= 128), starts) if len(words) else 0
        self._exact = np.zeros(2**bits, dtype=bool)
        self._exact[slots] = (lengths <= EXACT_CHARS) & (zero_or_high == 0)

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes * _FINALIZER) >> self._shift).astype(np.int64)

    def tokens(self, text: str) -> tuple[Tokens, list[str]]:
        """The tokens of `text`, and the text of those outside the vocabulary, in order."""
        parts, missing = [], []
        for block in _blocks(text):
            tokens, unknown = self._block_tokens(block)
            parts.append(tokens)
            missing += unknown
        if not parts:
            nothing = np.zeros(0, dtype=bool)
            return Tokens(np.zeros(0, dtype=np.int64), nothing, nothing, nothing), []
        return Tokens.concatenate(parts), missing

    def _block_tokens(self, text: str) -> tuple[Tokens, list[str]]:
        codes = code_points(text)
        flags = self.scanner.flags(codes)
        starts, ends = token_bounds(codes, flags, self.split)
        ids = self._lookup(codes, starts, ends)
        missing = ids == -1
        unknown = []
        for i in np.flatnonzero(ids < -1).tolist():  # a hash collision: ask the dict
            ids[i] = self.stoi.get(text[starts[i] : ends[i]], -1)
            missing[i] = ids[i] == -1
        if missing.any():
            unknown = [text[s:e] for s, e in zip(starts[missing].tolist(), ends[missing].tolist())]
            ids[missing] = self.unk_id
        before = np.maximum(starts - 1, 0)
        spaced = (starts > 0) & (flags[before] & CLASS == SPACE)
        first = flags[starts]
        first[ends - starts > 1] &= CLASS  # the marks are for tokens of one character
        return Tokens(ids, missing, spaced, first), unknown

    def _lookup(self, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Each token's id; -1 where the vocabulary lacks it, -2 where a dict must tell."""
        if not len(starts):
            return np.zeros(0, dtype=np.int64)
        hashes = polynomial_hashes(codes, starts, ends)
        slots = self._slots(hashes)
        ids = self._id[slots]
        other = self._hash[slots] != hashes
        pending = np.flatnonzero(other & (ids >= 0))  # another word there: probe on
        ids[other] = -1
        while pending.size:
            slots[pending] = (slots[pending] + 1) % len(self._id)
            slot = slots[pending]
            hit = self._hash[slot] == hashes[pending]
            ids[pending[hit]] = self._id[slot[hit]]
            pending = pending[~hit & (self._id[slot] >= 0)]
        self._verify(codes, starts, ends - starts, slots, ids)
        return ids

    def _verify(self, codes, starts, lengths, slots, ids) -> None:  # noqa: ANN001
        """Compare, character by character, each found token whose hash does not prove it
        equal to its word; one that differs gets -2 (for a dict lookup)."""
        found = np.flatnonzero(ids >= 0)
        proven = self._exact[slots[found]] & (lengths[found] <= EXACT_CHARS)
        proven &= ~_has_high(codes, starts)[found]
        check = found[~proven]
        check = check[self._length[slots[check]] == lengths[check]]
        ids[found[~proven]] = -2
        if not check.size:
            return
        check_lengths = lengths[check]
        same = (
            codes[_ranges(starts[check], check_lengths)]
            == self._codes[_ranges(self._start[slots[check]], check_lengths)]
        )
        right = np.logical_and.reduceat(same, np.cumsum(check_lengths) - check_lengths)
        ids[check[right]] = self._id[slots[check[right]]]


def _has_high(codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Whether each token (from its start to the next one's) holds a code point past ASCII."""
    high = np.flatnonzero(codes >= 128)
    token = np.searchsorted(starts, high, side="right") - 1
    marked = np.zeros(len(starts), dtype=bool)
    marked[token[token >= 0]] = True
    return marked


def _place(slots: np.ndarray, size: int) -> np.ndarray:
    """Where each key goes in an open-addressing table of `size` slots (linear probing, keys
    placed in order): `slots` are the keys' first choices."""
    placed = np.full(len(slots), -1, dtype=np.int64)
    taken = np.zeros(size, dtype=bool)
    pending, want = np.arange(len(slots)), slots.copy()
    while pending.size:
        free = ~taken[want]
        # Of the keys that want the same free slot, the first gets it.
        _, first = np.unique(want[free], return_index=True)
        winners = np.flatnonzero(free)[first]
        placed[pending[winners]] = want[winners]
        taken[want[winners]] = True
        keep = np.ones(len(pending), dtype=bool)
        keep[winners] = False
        pending, want = pending[keep], want[keep]
        want = np.where(taken[want], (want + 1) % size, want)
    return placed


def _blocks(text: str) -> list[str]:
    """`text` cut into pieces of about BLOCK_CHARS, each cut just before a whitespace
    character, so that no token spans two pieces and each piece still sees the space before
    its first token."""
    blocks, start = [], 0
    while start < len(text):
        found = _SPACE_RE.search(text, start + BLOCK_CHARS)
        end = found.start() if found else len(text)
        blocks.append(text[start:end])
        start = end
    return blocks


def with_markers(tokens: Tokens, split: str, space_id: int, nospace_id: int) -> np.ndarray:
    """The ids with a `<space>` or `<nospace>` marker before each token whose spacing in the
    text differs from the rule's (word.py's `_spaced`), for every token at once."""
    n = len(tokens.ids)
    if not n:
        return tokens.ids
    # What the rule says depends on the marks of a token and of the one before it, except
    # next to a `"`, where it also depends on whether a quotation is open.
    pairs = np.empty(n, dtype=np.uint16)
    pairs[0] = NEWLINE  # the first token has no previous one: as after a line break
    pairs[1:] = tokens.flags[:-1]
    pairs <<= 8
    pairs |= tokens.flags
    rules = _PAIR_RULES[split][pairs]
    edge, spaced_rule = (rules & _EDGE).astype(bool), (rules & _SPACED).astype(bool)
    if split == "words":
        near_quote = np.flatnonzero(rules & _NEAR_QUOTE)
        spaced_rule[near_quote] &= ~_quote_open(tokens.flags, near_quote)
    # Indentation and trailing spaces are not kept: no marker at a line's edges.
    marked = np.flatnonzero(~edge & (tokens.spaced != spaced_rule))
    copies = np.ones(n, dtype=np.int64)
    copies[marked] = 2  # the marker, then the token
    out = np.repeat(tokens.ids, copies)
    out[marked + np.arange(len(marked))] = np.where(tokens.spaced[marked], space_id, nospace_id)
    return out


_EDGE, _SPACED, _NEAR_QUOTE = 1, 2, 4


def _pair_rules(split: str) -> np.ndarray:
    """For every (previous flags, flags) pair as `previous << 8 | flags`: whether the token is
    at a line's edge, whether the rule spaces it (before any open quotation counts), and
    whether it or the previous token is a `"`."""
    previous, current = np.divmod(np.arange(1 << 16), 1 << 8)
    newline = lambda f: f & CLASS == NEWLINE  # noqa: E731
    edge = newline(previous) | newline(current)
    spaced = ~edge
    near_quote = np.zeros_like(edge)
    if split == "words":
        spaced &= (current & NO_SPACE_BEFORE == 0) & (previous & NO_SPACE_AFTER == 0)
        near_quote = ((current | previous) & QUOTE).astype(bool)
    return (edge * _EDGE | spaced * _SPACED | near_quote * _NEAR_QUOTE).astype(np.uint8)


_PAIR_RULES = {split: _pair_rules(split) for split in ("words", "spaces")}


def _quote_open(flags: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Whether a `"` is open before each token in `at`: each `"` toggles it, and a paragraph
    break (a line break right after a line break) closes it."""
    quotes = np.flatnonzero(flags & QUOTE)
    newline = flags & CLASS == NEWLINE
    breaks = np.flatnonzero(newline[1:] & newline[:-1]) + 1
    last_break = breaks[np.maximum(np.searchsorted(breaks, at) - 1, 0)] if len(breaks) else at
    last_break = np.where(len(breaks) and last_break < at, last_break, -1)
    since = np.searchsorted(quotes, at) - np.searchsorted(quotes, last_break, side="right")
    return (since & 1).astype(bool)
