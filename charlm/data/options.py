"""How books become training, validation and test ids: the data options of a run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from charlm.corpus import DEFAULT_CORPUS_DIR, SplitConfig
from charlm.options import option


@dataclass
class DataOptions:
    """How books become training, validation and test ids (see docs/corpora.md)."""

    val_fraction: float = option(
        0.1,
        "Fraction at the end of each book held out for validation (ignored with --val).",
        low=0, high=1, high_open=True,
    )  # fmt: skip
    test_fraction: float = option(
        0.0,
        "Fraction at the very end of each book held out for a final test perplexity "
        "(ignored with --test).",
        low=0, high=1, high_open=True,
    )  # fmt: skip
    val_file: str | None = option(
        None,
        "Validation text from this file instead of each book's tail.",
        flag="--val", path="file", shown_default="none",
    )  # fmt: skip
    test_file: str | None = option(
        None,
        "Test text from this file, scored once after training.",
        flag="--test", path="file", shown_default="none",
    )  # fmt: skip
    encoding: str | None = option(
        None,
        "Read the books in this encoding (e.g. cp1252, gb18030) instead of detecting it.",
        shown_default="detect",
    )
    keep_boilerplate: bool = option(
        False, "Keep the Project Gutenberg header and licence instead of removing them."
    )
    cache_dir: str | None = option(
        None,
        "Where encoded corpora are cached.",
        path="dir", shown_default="$CHARLM_CACHE or ~/.cache/charlm",
    )  # fmt: skip
    use_cache: bool = option(
        True, "Tokenize in memory; neither read nor write the token cache.", flag="--no-cache",
        inverted=True,
    )  # fmt: skip
    # Where catalogue books are downloaded; set by the caller, not on the command line.
    corpus_dir: str = str(DEFAULT_CORPUS_DIR)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def splits(self) -> SplitConfig:
        return SplitConfig(
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            val_file=self.val_file,
            test_file=self.test_file,
        )
