"""The tokenizer interface every tokenizer meets, built-in or plugin.

A tokenizer is trained on a book, turns text into integer ids and back, and saves itself as
plain JSON (never pickle) so a checkpoint says in readable form how text was cut.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from charlm import jsontext
from charlm.errors import TokenizerError, UnknownTokenError

# What to do with pieces of a text (usually a prompt) that the vocabulary lacks.
UNKNOWN_POLICIES = ("error", "skip", "unk")


# The largest integer a tokenizer option may take when only the native library sets a ceiling
# (Hugging Face's trainers take 64-bit counts); listings say "at least ..." for it.
NO_CEILING = 2**63 - 1


@dataclass(frozen=True)
class Option:
    """One training option of a tokenizer: its type, default, a line of help and its limits.

    `file` marks an option that names a file the tokenizer is built from: the token cache
    keys it by the file's content, so a changed file never meets the ids of the old one.
    The limits (`low`, `high`, `choices`, `required`) are checked by `check_options`, which
    both the command line (before any book is read) and `train` call, so a value is judged
    by one rule wherever it comes from.
    """

    type: type
    default: Any
    help: str
    file: bool = False
    low: int | float | None = None  # the smallest value allowed, inclusive
    high: int | float | None = None  # the largest value allowed, inclusive
    choices: tuple[str, ...] | None = None  # the only values allowed
    required: bool = False  # the tokenizer cannot be trained without a (non-empty) value

    def convert(self, key: str, value: Any) -> Any:
        """`value` as `self.type`, within the limits; strings from the command line are parsed."""
        value = self._typed(key, value)
        if value is not None:
            self._check_limits(key, value)
        return value

    def _typed(self, key: str, value: Any) -> Any:
        if value is None or isinstance(value, self.type) and not isinstance(value, bool):
            return value
        if self.type is bool:
            return _parse_bool(key, value)
        try:
            return self.type(value)
        except (TypeError, ValueError):
            raise TokenizerError(
                f"tokenizer option {key}={value!r} is not a valid {self.type.__name__}"
            ) from None

    def limits(self) -> str:
        """The limits in words, for listings: "at least 1", "1 to 65,536", "words or spaces"."""
        parts = []
        if self.required:
            parts.append("required")
        high = None if self.high == NO_CEILING else self.high
        if self.low is not None and high is not None:
            parts.append(f"{self.low:,} to {high:,}")
        elif self.low is not None:
            parts.append(f"at least {self.low:,}")
        elif high is not None:
            parts.append(f"at most {high:,}")
        if self.choices is not None:
            parts.append(" or ".join(self.choices))
        return "; ".join(parts)

    def _check_limits(self, key: str, value: Any) -> None:
        # `not value >= low` rather than `value < low`, so that NaN is refused too.
        if self.low is not None and not value >= self.low:
            raise TokenizerError(f"tokenizer option {key}={value!r} must be at least {self.low}")
        if self.high is not None and not value <= self.high:
            raise TokenizerError(f"tokenizer option {key}={value!r} must be at most {self.high:,}")
        if self.choices is not None and value not in self.choices:
            raise TokenizerError(
                f"tokenizer option {key}={value!r} must be one of {', '.join(self.choices)}"
            )


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise TokenizerError(f"tokenizer option {key}={value!r} must be true or false")


class Tokenizer(ABC):
    """Turns text into ids and ids into text.

    Subclasses set `name` and `description`, and implement `train`, `encode`, `decode`,
    `vocab_size`, `get_state` and `from_state`. They may declare their training options in
    `options` (then `charlm tokenizers` lists them and command-line strings are converted),
    set `unk_id` when they have an unknown token, and override `stream_decoder` when they can
    decode one token at a time more cheaply than the generic fallback.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}

    @classmethod
    @abstractmethod
    def train(cls, text: str, **options: Any) -> Tokenizer:
        """Build a tokenizer whose vocabulary comes from `text`."""

    @abstractmethod
    def encode(self, text: str) -> np.ndarray | list[int]:
        """Ids for `text`: a list of ints or a 1-D integer NumPy array.

        Pieces outside the vocabulary become `unk_id`, or raise `UnknownTokenError` when the
        tokenizer has no unknown token.
        """

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids; every id is in `range(vocab_size)`."""

    def token_text(self, token: int) -> str:
        """The name of one token in this vocabulary, unique to it: what a model moved onto
        another vocabulary matches tokens by (models/vocabulary.py). By default its text;
        a tokenizer whose markers decode to nothing, or whose tokens are parts of a
        character, names them itself."""
        return self.decode([token])

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """A JSON-serialisable dict from which `from_state` rebuilds this tokenizer."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer saved with `get_state`."""

    def is_saved_as(self, name: str | None, state: Any) -> bool:
        """Whether a tokenizer saved as `name` and `state` gives exactly this one's ids (the
        states compared as JSON text: a saved state reads its tuples back as lists)."""
        return name == self.name and jsontext.dumps(state, sort_keys=True) == jsontext.dumps(
            self.get_state(), sort_keys=True
        )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """`options` with declared types applied and limits checked; unknown keys and a
        missing required option are errors.

        A tokenizer that does not declare `options` at all receives whatever it is given,
        unchanged; one that declares them empty (`options = {}`) takes none.
        """
        if not cls.options and not _declares_options(cls):
            return dict(options)
        checked = {}
        for key, value in options.items():
            if key not in cls.options:
                known = f"its options: {', '.join(sorted(cls.options))}" if cls.options else ""
                raise TokenizerError(
                    f"the {cls.name} tokenizer has no option {key!r} ({known or 'it takes none'})"
                )
            checked[key] = cls.options[key].convert(key, value)
        for key, option in cls.options.items():
            if option.required and checked.get(key) in (None, ""):
                raise TokenizerError(
                    f"the {cls.name} tokenizer needs the option {key} ({option.help}): "
                    f"--tokenizer-option {key}=VALUE"
                )
        return checked

    @property
    def unk_id(self) -> int | None:
        """The id that stands for pieces outside the vocabulary, or None if there is none."""
        return None

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids that are not text (unknown, padding, markers): sampling never draws them."""
        return () if self.unk_id is None else (self.unk_id,)

    def banned_ids(self, allow_unk: bool = False) -> list[int]:
        """The ids a sampler must mask; `<unk>` stays allowed only when asked for."""
        unk = self.unk_id if allow_unk else None
        return [i for i in self.special_ids if i != unk]

    def encode_array(self, text: str, unknown: str | None = None) -> np.ndarray:
        """`encode` as a 1-D int64 array, with an optional policy for unknown pieces.

        `unknown`: None keeps the tokenizer's default (map to `<unk>` where it has one, else
        fail); "error" fails naming the unknown pieces; "skip" drops them; "unk" maps them to
        `<unk>` (an error for a tokenizer without one).
        """
        if unknown is None:
            return _as_ids(self.encode(text))
        if unknown not in UNKNOWN_POLICIES:
            choices = ", ".join(UNKNOWN_POLICIES)
            raise TokenizerError(f"unknown-token policy must be one of {choices}, not {unknown!r}")
        if unknown == "unk" and self.unk_id is None:
            raise UnknownTokenError(
                f"the {self.name} tokenizer has no <unk> token to read unknown pieces as; "
                "they can only be refused or skipped"
            )
        return self.encode_with_policy(text, unknown)

    def encode_with_policy(self, text: str, unknown: str) -> np.ndarray:
        """Encode under "error", "skip" or "unk"; override to name or drop pieces precisely.

        This generic version works from `unk_id`: a tokenizer without one must raise
        `UnknownTokenError` from `encode` itself, so "skip" cannot drop anything there.
        """
        ids = _as_ids(self.encode(text))
        if self.unk_id is None or unknown == "unk":
            return ids
        unknown_at = ids == self.unk_id
        if unknown == "skip":
            return ids[~unknown_at]
        if unknown_at.any():
            count = int(unknown_at.sum())
            summary = f"{count:,} piece{'s' if count != 1 else ''} the model never saw"
            raise UnknownTokenError.unseen_pieces(summary, {}, ("skip", "unk"))
        return ids

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        """A decoder that turns ids arriving one at a time into complete pieces of text.

        `context` holds the ids that came before (the prefix), so spacing and multi-token
        characters are decoded as they would be in the whole text.
        """
        return StreamDecoder(self, context)


def _declares_options(cls: type[Tokenizer]) -> bool:
    """Whether `cls` or a base class of it below `Tokenizer` sets `options`, even to none."""
    return any("options" in vars(klass) for klass in cls.__mro__ if klass is not Tokenizer)


def _as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).reshape(-1)


# An error names this many unseen pieces, most frequent first, then says how many more.
UNSEEN_SHOWN = 20


def unknown_error(
    kind: str, pieces: Mapping[str, int] | Sequence[str], has_unk: bool = True
) -> UnknownTokenError:
    """The one-line error that names the pieces outside a vocabulary and how often each occurs.

    `pieces`: each unseen piece with its count, or a list of the pieces as they occurred.
    """
    counts = dict(pieces) if isinstance(pieces, Mapping) else dict(Counter(pieces))
    # Most frequent first, then in code-point order, so the message is the same every time.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{piece!r} ×{count:,}" for piece, count in ranked[:UNSEEN_SHOWN])
    more = f" and {len(ranked) - UNSEEN_SHOWN:,} more" if len(ranked) > UNSEEN_SHOWN else ""
    total = sum(counts.values())
    plural = "" if len(ranked) == 1 else "s"
    summary = (
        f"{len(ranked):,} {kind}{plural} the model never saw ({total:,} in all): {shown}{more}"
    )
    policies = ("skip", "unk") if has_unk else ("skip",)
    error = UnknownTokenError.unseen_pieces(summary, dict(ranked), policies)
    error.kind = kind  # so that the errors of several texts can be told as one (below)
    return error


def joined_unknown_error(errors: Sequence[UnknownTokenError]) -> UnknownTokenError:
    """One error for the unseen pieces of several texts, their counts added; the first error
    as it is where a tokenizer could not name its pieces."""
    first = errors[0]
    if not all(error.unseen and error.kind for error in errors):
        return first
    counts: Counter[str] = Counter()
    for error in errors:
        counts.update(error.unseen)
    return unknown_error(first.kind, counts, "unk" in first.policies)


class StreamDecoder:
    """Generic incremental decoding: emit what each id adds to the decoded text.

    Each step decodes a short window, the ids since the last emitted piece plus a few before
    them for their spacing, and emits what the new ids add to that window's text (the offsets
    of Hugging Face's text-generation-inference). Decoding the whole text at every step
    would make a stream quadratic in its length. Text ending in U+FFFD is held back, because
    with byte-level vocabularies that usually means a multi-byte character whose remaining
    bytes have not arrived yet. Assumes, as those servers do, that an id's text depends on a
    few ids before it, not on the whole text; a tokenizer for which that is false overrides
    `Tokenizer.stream_decoder`.
    """

    CONTEXT_IDS = 6  # ids decoded before the new ones, so their spacing is decoded as in place

    def __init__(self, tokenizer: Tokenizer, context: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids = list(context)
        self._read = len(self._ids)  # ids[:read] have been emitted
        self._prefix = max(0, self._read - self.CONTEXT_IDS)  # the window starts here

    def step(self, token_id: int) -> str:
        """Add one id; return the text it completes (possibly empty)."""
        self._ids.append(int(token_id))
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back at the end of generation."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix : self._read])
        text = decode(self._ids[self._prefix :])
        if not text.startswith(before) or (text.endswith("\ufffd") and not final):
            return ""
        new = text[len(before) :]
        if new or final:
            self._read = len(self._ids)
            self._prefix = max(self._prefix, self._read - self.CONTEXT_IDS)
        return new

    def feed(self, ids: Sequence[int]) -> Iterator[str]:
        """Step through several ids, yielding non-empty pieces."""
        for token_id in ids:
            piece = self.step(token_id)
            if piece:
                yield piece
