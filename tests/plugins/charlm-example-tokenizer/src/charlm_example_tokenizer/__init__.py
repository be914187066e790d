"""An example charlm tokenizer plugin: text cut into pairs of characters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from charlm.errors import TokenizerError
from charlm.tokenizers import Option, Tokenizer

UNK = "<unk>"


class PairTokenizer(Tokenizer):
    """Two characters per token (the last may be one); rare pairs become <unk>."""

    name = "pairs"  # the same name as the entry point in pyproject.toml
    description = "pairs of characters: half as many tokens as char (example plugin)"
    options = {"min_freq": Option(int, 1, "pairs seen fewer times become <unk>")}

    def __init__(self, pieces: Sequence[str]) -> None:
        self.itos = [UNK, *pieces]
        self.stoi = {piece: i for i, piece in enumerate(self.itos)}

    @classmethod
    def train(cls, text: str, **options: Any) -> PairTokenizer:
        min_freq = cls.check_options(options).get("min_freq", 1)
        counts = Counter(_pairs(text))
        return cls(sorted(p for p, n in counts.items() if n >= min_freq))

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(pair, 0) for pair in _pairs(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.itos[i] for i in ids)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def unk_id(self) -> int:
        return 0

    def get_state(self) -> dict[str, Any]:
        return {"pieces": self.itos[1:]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PairTokenizer:
        if not isinstance(state.get("pieces"), list):
            raise TokenizerError("pairs tokenizer state needs a list under 'pieces'")
        return cls(state["pieces"])


def _pairs(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(0, len(text), 2)]
