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
3. Each token is looked up in an open-addressing table of the vocabulary. A token of at most
   16 characters, each in 1..255 (most tokens of most texts), is keyed by its characters packed
   into two 64-bit integers, so equal keys are equal words. Any other token is keyed by a
   polynomial hash of its code points (base 129, from prefix sums) and, when found, compared
   with its word character by character. A token the table lacks is outside the vocabulary;
   a mismatch falls back to a dict lookup. No token can get a wrong id.
4. The spacing rule (word.py's `_spaced` with its open-quote state) runs over the whole token
   sequence at once, and `<space>`/`<nospace>` markers go where the text differs from it.

The text is processed in blocks cut at whitespace, so memory stays proportional to a block,
and the blocks of a long text are encoded on one thread per CPU core: NumPy lets go of the
interpreter lock inside its array operations, so two cores encode about 1.8x as fast as one.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import NamedTuple, TypeVar

import numpy as np

# A character's class in its low two bits, and the marks of the spacing rule above them.
OTHER, WORD, SPACE, NEWLINE = 0, 1, 2, 3
CLASS = 3
JOINER, QUOTE, NO_SPACE_BEFORE, NO_SPACE_AFTER = 4, 8, 16, 32
UNSEEN = 255  # a character not classed yet
JOINERS = "'’-"  # between word characters, part of the word: don't, well-known
BLOCK_CHARS = 1 << 20  # about 50 MB of temporary arrays per block
UNK_TEXT = "<unk>"
BASE = 129  # the polynomial hash's base
_FINALIZER = np.uint64(0x9E3779B97F4A7C15)  # spreads a hash over the table's slots
_WORD_RE, _SPACE_RE = re.compile(r"\w"), re.compile(r"\s")
T = TypeVar("T")


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
        # Every code point's flags, filled in as texts bring characters not seen before; the
        # blocks of one text are scanned on several threads, so learning takes a lock.
        self._table = np.full(sys.maxunicode + 1, UNSEEN, dtype=np.uint8)
        self._learning = threading.Lock()
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
        flags = np.take(self._table, codes)  # twice as fast as self._table[codes] here
        new = flags == UNSEEN
        if new.any():
            with self._learning:
                self._learn(np.unique(codes[new]))
            flags = np.take(self._table, codes)
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

    def select(self, keep: np.ndarray) -> Tokens:
        return Tokens(*(column[keep] for column in self))


class WordIndex:
    """A word vocabulary laid out for array lookups, and the encoder that uses it.

    Words of at most PACKED_CHARS characters, each in 1..255, are keyed by their characters
    packed into two 64-bit integers, so an equal key is an equal word; the others by their
    polynomial hash, with the characters compared after a match."""

    def __init__(self, itos: Sequence[str], split: str, unk_id: int, scanner: Scanner) -> None:
        self.split, self.unk_id, self.scanner = split, unk_id, scanner
        self.stoi = {word: i for i, word in enumerate(itos)}
        words = [word for word in itos if word]
        ids = np.array([self.stoi[word] for word in words], dtype=np.int64)
        self._codes = code_points("".join(words))
        lengths = np.array([len(word) for word in words], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        hashed = _hashed(self._codes, starts, lengths)
        packed = ~hashed
        keys = packed_keys(self._codes, starts[packed], lengths[packed])
        self._packed = HashTable(keys, ids[packed])
        starts, lengths, ids = starts[hashed], lengths[hashed], ids[hashed]
        self._hashed = HashTable((polynomial_hashes(self._codes, starts, starts + lengths),), ids)
        # Where each hashed word's characters are, by its slot, for the comparison.
        self._start, self._length = self._hashed.by_slot(starts), self._hashed.by_slot(lengths)

    def tokens(self, text: str) -> tuple[list[Tokens], list[str]]:
        """The tokens of `text`, block by block, and the text of those outside the
        vocabulary, in order."""
        scanned = _on_threads(self._block_tokens, _blocks(text))
        missing = [word for _, unknown in scanned for word in unknown]
        return [tokens for tokens, _ in scanned], missing

    def _block_tokens(self, text: str) -> tuple[Tokens, list[str]]:
        codes = code_points(text)
        flags = self.scanner.flags(codes)
        starts, ends = token_bounds(codes, flags, self.split)
        ids = self._lookup(codes, starts, ends - starts)
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

    def _lookup(self, codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Each token's id; -1 where the vocabulary lacks it, -2 where a dict must tell."""
        ids = np.empty(len(starts), dtype=np.int64)
        hashed = _hashed(codes, starts, lengths)
        packed = np.flatnonzero(~hashed)
        _, ids[packed] = self._packed.find(packed_keys(codes, starts[packed], lengths[packed]))
        hashed = np.flatnonzero(hashed)
        if hashed.size:
            ids[hashed] = self._lookup_hashed(codes, starts[hashed], lengths[hashed])
        return ids

    def _lookup_hashed(
        self, codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        """The ids of tokens keyed by hash: a found word whose characters differ gets -2."""
        # The tokens' characters side by side, so that the prefix sum runs over them alone.
        gathered = codes[_ranges(starts, lengths)]
        firsts = np.cumsum(lengths) - lengths
        slots, ids = self._hashed.find((polynomial_hashes(gathered, firsts, firsts + lengths),))
        found = np.flatnonzero(ids >= 0)
        check = found[self._length[slots[found]] == lengths[found]]
        ids[found] = -2
        if check.size:
            check_lengths = lengths[check]
            same = (
                gathered[_ranges(firsts[check], check_lengths)]
                == self._codes[_ranges(self._start[slots[check]], check_lengths)]
            )
            right = check[np.logical_and.reduceat(same, np.cumsum(check_lengths) - check_lengths)]
            ids[right] = self._hashed.values[slots[right]]
        return ids


PACKED_CHARS = 16  # two 64-bit integers of eight characters
_BYTE_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)


def _hashed(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether each token is keyed by hash: longer than PACKED_CHARS, or holding a character
    outside 1..255 (the same test for the text's tokens and the vocabulary's words)."""
    hashed = lengths > PACKED_CHARS
    outside = np.flatnonzero((codes - np.uint32(1)) >= 255)  # 0 wraps round to the top
    token = np.searchsorted(starts, outside, side="right") - 1
    outside, token = outside[token >= 0], token[token >= 0]
    hashed[token[outside < starts[token] + lengths[token]]] = True
    return hashed


def packed_keys(
    codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each token's characters (at most PACKED_CHARS, each in 1..255) as the bytes of two
    64-bit integers, first character lowest; no two different such tokens share a key."""
    text = np.empty(len(codes) + 16, dtype=np.uint8)
    text[: len(codes)] = codes  # keeps the low byte, all these tokens need
    text[len(codes) :] = 0
    # Every position's next eight bytes as one (unaligned) integer.
    windows = np.ndarray((len(codes) + 8,), dtype="<u8", buffer=text, strides=(1,))
    first = windows[starts] & _BYTE_MASKS[np.minimum(lengths, 8)]
    second = np.zeros(len(starts), dtype=np.uint64)
    longer = np.flatnonzero(lengths > 8)
    second[longer] = windows[starts[longer] + 8] & _BYTE_MASKS[lengths[longer] - 8]
    return first, second


class HashTable:
    """Keys of one or more 64-bit columns to ids, by open addressing (linear probing, at
    most half full)."""

    def __init__(self, keys: Sequence[np.ndarray], values: np.ndarray) -> None:
        bits = max(4, (2 * len(values)).bit_length())
        self._shift, self.size = np.uint64(64 - bits), 2**bits
        self._slots = _place(self._first_slots(keys), self.size)
        self.keys = [self.by_slot(column, np.uint64) for column in keys]
        self.values = self.by_slot(values, fill=-1)

    def by_slot(self, column: np.ndarray, dtype: type = np.int64, fill: int = 0) -> np.ndarray:
        """`column` (one value per key, in the keys' order) laid out by the keys' slots."""
        out = np.full(self.size, fill, dtype=dtype)
        out[self._slots] = column
        return out

    def _first_slots(self, keys: Sequence[np.ndarray]) -> np.ndarray:
        mixed = keys[0] * _FINALIZER
        for column in keys[1:]:
            mixed = (mixed ^ column) * _FINALIZER
        return (mixed >> self._shift).astype(np.int64)

    def _differ(self, slots: np.ndarray, keys: Sequence[np.ndarray]) -> np.ndarray:
        differ = self.keys[0][slots] != keys[0]
        for stored, column in zip(self.keys[1:], keys[1:]):
            differ |= stored[slots] != column
        return differ

    def find(self, keys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The slot and id of each key; id -1 where the table lacks it (keys equal to
        several entries' find the first placed)."""
        slots = self._first_slots(keys)
        ids = self.values[slots]
        other = self._differ(slots, keys)
        pending = np.flatnonzero(other & (ids >= 0))  # another key there: probe on
        ids[other] = -1
        while pending.size:
            slots[pending] = (slots[pending] + 1) % self.size
            slot = slots[pending]
            hit = ~self._differ(slot, [column[pending] for column in keys])
            ids[pending[hit]] = self.values[slot[hit]]
            pending = pending[~hit & (self.values[slot] >= 0)]
        return slots, ids


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


def _on_threads(function: Callable[..., T], *items: Sequence) -> list[T]:
    """`function` over `items` (as `map` takes them), in order: on one thread per CPU core
    when there is more than one item."""
    workers = min(len(items[0]), _cores())
    if workers < 2:
        return list(map(function, *items))
    with ThreadPoolExecutor(workers, thread_name_prefix="charlm-words") as pool:
        return list(pool.map(function, *items))


def _cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


class Context(NamedTuple):
    """What the spacing rule needs from before a block: the flags of the token before it and
    whether a `"` is open there."""

    previous: int = NEWLINE  # the first token of a text is as after a line break
    quote_open: bool = False


def with_markers(
    blocks: Sequence[Tokens], split: str, space_id: int, nospace_id: int
) -> np.ndarray:
    """The ids of the tokens of consecutive blocks, with a `<space>` or `<nospace>` marker
    before each token whose spacing in the text differs from the rule's (word.py's
    `_spaced`); the blocks are marked on threads, each from the context the ones before it
    leave."""
    contexts, context = [], Context()
    for tokens in blocks:
        contexts.append(context)
        context = _context_after(tokens.flags, context)
    marked = _on_threads(
        lambda tokens, before: _block_markers(tokens, before, split, space_id, nospace_id),
        blocks,
        contexts,
    )
    return np.concatenate(marked) if marked else np.zeros(0, dtype=np.int64)


def _block_markers(
    tokens: Tokens, before: Context, split: str, space_id: int, nospace_id: int
) -> np.ndarray:
    """One block's ids with their markers, every token at once."""
    n = len(tokens.ids)
    if not n:
        return tokens.ids
    # What the rule says depends on the marks of a token and of the one before it, except
    # next to a `"`, where it also depends on whether a quotation is open.
    pairs = np.empty(n, dtype=np.uint16)
    pairs[0] = before.previous
    pairs[1:] = tokens.flags[:-1]
    pairs <<= 8
    pairs |= tokens.flags
    rules = np.take(_PAIR_RULES[split], pairs)
    edge, spaced_rule = (rules & _EDGE).astype(bool), (rules & _SPACED).astype(bool)
    if split == "words":
        near_quote = np.flatnonzero(rules & _NEAR_QUOTE)
        spaced_rule[near_quote] &= ~_quote_open(tokens.flags, near_quote, before)
    # Indentation and trailing spaces are not kept: no marker at a line's edges.
    marked = np.flatnonzero(~edge & (tokens.spaced != spaced_rule))
    markers = np.where(tokens.spaced[marked], space_id, nospace_id)
    return np.insert(tokens.ids, marked, markers)  # each marker just before its token


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


def _quote_open(flags: np.ndarray, at: np.ndarray, before: Context) -> np.ndarray:
    """Whether a `"` is open before each token in `at`: each `"` toggles it, and a paragraph
    break (a line break right after a line break) closes it."""
    quotes = np.flatnonzero(flags & QUOTE)
    newline = flags & CLASS == NEWLINE
    breaks = np.flatnonzero(newline[1:] & newline[:-1]) + 1
    if len(flags) and newline[0] and before.previous & CLASS == NEWLINE:
        breaks = np.concatenate([[0], breaks])  # the break runs across the blocks' border
    quotes_before = np.searchsorted(quotes, at)
    if not len(breaks):
        return ((quotes_before & 1) ^ before.quote_open).astype(bool)
    last = np.searchsorted(breaks, at) - 1  # the last break before each token, -1 if none
    since = quotes_before - np.searchsorted(quotes, breaks[np.maximum(last, 0)], side="right")
    return np.where(last < 0, (quotes_before & 1) ^ before.quote_open, since & 1).astype(bool)


def _context_after(flags: np.ndarray, before: Context) -> Context:
    """The context a block whose tokens have `flags` leaves to the next one."""
    if not len(flags):
        return before
    quote_open = _quote_open(flags, np.array([len(flags)]), before)[0]
    return Context(int(flags[-1]), bool(quote_open))
