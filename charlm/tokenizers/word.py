"""Word tokenizer: words, punctuation marks and line breaks, with the spacing kept.

Spaces are not tokens. Between two tokens the decoder puts a space or not by a fixed rule
(`_spaced`): no space before closing punctuation such as `.,;:!?)]}`, none after opening
punctuation such as `([{` or after a line break, an ASCII `"` alternately opens and closes a
quotation, and one space everywhere else. Where the book differs from the rule, the encoder
writes one of two marker tokens, `<space>` or `<nospace>`, before the token, so the model
learns the book's spacing and `decode(encode(text))` gives the text back with only this
normalised: runs of spaces and tabs become one space, spaces at the start and end of a line
are dropped, and words outside the vocabulary read `<unk>`. With the option `split=spaces`
tokens are simply what spaces separate (for text that is already tokenized, such as PTB).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np

from charlm.errors import TokenizerError

from .base import Option, StreamDecoder, Tokenizer, unknown_error
from .wordscan import Scanner, WordIndex, with_markers

UNK, SPACE, NOSPACE, NEWLINE = "<unk>", "<space>", "<nospace>", "\n"
SPECIALS = (UNK, SPACE, NOSPACE)
# Always in the vocabulary, whatever the book: the markers, and the line break, which both
# keeps a text's shape and is what a sampler starts an empty prompt from.
FIXED = (*SPECIALS, NEWLINE)
# A literal <unk> in the text (Penn Treebank has them) is the unknown token itself; words
# keep inner apostrophes and hyphens (don't, well-known); any other non-space character is
# a token of its own.
TOKEN_RE = re.compile(r"<unk>|\n|\w+(?:['’-]\w+)*|[^\w\s]")
# For text that is already tokenized (Penn Treebank, WikiText): tokens are what spaces separate.
SPACES_RE = re.compile(r"\n|[^\s]+")
SPLITS = {"words": TOKEN_RE, "spaces": SPACES_RE}
NO_SPACE_BEFORE = set(".,;:!?)]}%’”»…")
NO_SPACE_AFTER = set("([{$‘“«")
# Character classes and spacing marks for the array encoder, as TOKEN_RE and _spaced see them.
_SCANNER = Scanner("".join(sorted(NO_SPACE_BEFORE)), "".join(sorted(NO_SPACE_AFTER)))


def _spaced(previous: str | None, token: str, quote_open: bool, split: str = "words") -> bool:
    """Whether the default rule puts a space between `previous` and `token`."""
    if previous is None or previous == NEWLINE or token == NEWLINE:
        return False
    if split == "spaces":
        return True
    if token in NO_SPACE_BEFORE or previous in NO_SPACE_AFTER:
        return False
    if token == '"':
        return not quote_open  # an opening quote is spaced, a closing one is not
    if previous == '"':
        return not quote_open  # a closing quote is followed by a space, an opening one not
    return True


class _Spacing:
    """The state the spacing rule needs: the previous token and whether a `"` is open."""

    def __init__(self, split: str = "words") -> None:
        self.previous: str | None = None
        self.quote_open = False
        self.split = split

    def spaced(self, token: str) -> bool:
        return _spaced(self.previous, token, self.quote_open, self.split)

    def advance(self, token: str) -> None:
        if token == '"':
            self.quote_open = not self.quote_open
        elif token == NEWLINE and self.previous == NEWLINE:
            self.quote_open = False  # a paragraph break closes a forgotten quotation
        self.previous = token


class WordTokenizer(Tokenizer):
    """Words and punctuation from a regular expression; rare words become `<unk>`."""

    name = "word"
    description = "words and punctuation (spacing kept by two marker tokens); <unk> for the rest"
    options = {
        "min_freq": Option(int, 1, "words seen fewer times become <unk>", low=1),
        "max_vocab": Option(int, 0, "keep only this many most frequent words (0: no limit)", low=0),
        "lowercase": Option(bool, False, "lowercase the text before anything else"),
        "split": Option(
            str,
            "words",
            "words: by the regular expression; spaces: at spaces only",
            choices=tuple(SPLITS),
        ),
    }

    def __init__(
        self, words: Sequence[str], *, lowercase: bool = False, split: str = "words"
    ) -> None:
        if split not in SPLITS:
            raise TokenizerError(f"split must be words or spaces, not {split!r}")
        self.split = split
        self.itos = list(FIXED) + [w for w in words if w not in FIXED]
        if len(set(self.itos)) != len(self.itos):
            raise TokenizerError("a word vocabulary must not repeat a word")
        self.stoi = {word: i for i, word in enumerate(self.itos)}
        self.lowercase = lowercase

    @classmethod
    def train(cls, text: str, **options: Any) -> WordTokenizer:
        opts = {key: option.default for key, option in cls.options.items()}
        opts.update(cls.check_options(options))
        if opts["lowercase"]:
            text = text.lower()
        counts = Counter(SPLITS[opts["split"]].findall(text))
        for fixed in FIXED:
            counts.pop(fixed, None)
        # Most frequent first; ties alphabetically, so the vocabulary does not depend on order.
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        words = [w for w, n in ranked if n >= opts["min_freq"]]
        if opts["max_vocab"]:
            words = words[: opts["max_vocab"]]
        return cls(words, lowercase=opts["lowercase"], split=opts["split"])

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    def token_text(self, token: int) -> str:
        return self.itos[token]  # the spacing markers decode to nothing

    def encode(self, text: str) -> np.ndarray:
        return self.encode_with_policy(text, "unk")

    def encode_with_policy(self, text: str, unknown: str) -> np.ndarray:
        if self.lowercase:
            text = text.lower()
        blocks, missing = self._index.tokens(text)
        if missing and unknown == "error":
            raise unknown_error("word", missing)
        if missing and unknown == "skip":
            blocks = [tokens.select(~tokens.missing) for tokens in blocks]
        return with_markers(blocks, self.split, self.stoi[SPACE], self.stoi[NOSPACE])

    @cached_property
    def _index(self) -> WordIndex:
        """The vocabulary laid out for the array encoder (charlm/tokenizers/wordscan.py)."""
        return WordIndex(self.itos, self.split, self.stoi[UNK], _SCANNER)

    def decode(self, ids: Sequence[int]) -> str:
        decoder = _WordStreamDecoder(self)
        return "".join([decoder.step(i) for i in ids])

    def get_state(self) -> dict[str, Any]:
        return {"words": self.itos[len(FIXED) :], "lowercase": self.lowercase, "split": self.split}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        words = state.get("words") if isinstance(state, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise TokenizerError("word tokenizer state needs a list of strings under 'words'")
        return cls(
            words,
            lowercase=bool(state.get("lowercase", False)),
            split=state.get("split", "words"),
        )

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        decoder = _WordStreamDecoder(self)
        for token_id in context:
            decoder.step(token_id)
        return decoder


class _WordStreamDecoder(StreamDecoder):
    """Applies the spacing rule token by token; the marker tokens change the next space."""

    def __init__(self, tokenizer: WordTokenizer) -> None:
        self._itos = tokenizer.itos
        self._spacing = _Spacing(tokenizer.split)
        self._forced: bool | None = None

    def step(self, token_id: int) -> str:
        token = self._itos[token_id]
        if token in (SPACE, NOSPACE):
            self._forced = token == SPACE
            return ""
        spaced = self._spacing.spaced(token) if self._forced is None else self._forced
        self._forced = None
        self._spacing.advance(token)
        return " " + token if spaced else token

    def flush(self) -> str:
        return ""
