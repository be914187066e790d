"""How books become training, validation and test ids: the data options of a run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from charlm.corpus import DEFAULT_CORPUS_DIR, EXAMPLE_UNITS, LABEL_SOURCES, SplitConfig
from charlm.corpus.examples import check_format
from charlm.errors import ConfigError
from charlm.options import check_types, option


@dataclass
class DataOptions:
    """How books become training, validation and test ids (see docs/corpora.md); with
    `labels` or `examples`, how short examples are read and split (docs/labelled-text.md)."""

    labels: str | None = option(
        None,
        "The data is labelled examples: files: each file is a label (its name); dirs: each "
        "subdirectory is a label; table: .tsv/.csv/.jsonl rows with a text and a label column.",
        choices=LABEL_SOURCES, shown_default="none: continuous text",
    )  # fmt: skip
    examples: str | None = option(
        None,
        "The data is short examples, each trained from its own start to an end token: lines: "
        "every non-empty line; files: every file. --labels files/dirs imply lines.",
        choices=EXAMPLE_UNITS, shown_default="none: continuous text",
    )  # fmt: skip
    text_column: str = option("text", "--labels table: the column holding the text.")
    label_column: str = option("label", "--labels table: the column holding the label.")
    dedupe: bool = option(
        False,
        "With examples: train on each (text, label) once; duplicates are reported either way.",
    )
    split_seed: int = option(
        0,
        "With examples: the seed that draws the validation and test examples (by distinct "
        "text, label by label).",
        low=0, high=2**32 - 1,
    )  # fmt: skip
    val_fraction: float = option(
        0.1,
        "Fraction at the end of each book (with examples: of each label's distinct texts) "
        "held out for validation (ignored with --val).",
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
        "Validation text from this file (with examples: these examples, read alike) instead "
        "of each book's tail.",
        flag="--val", path="any", shown_default="none",
    )  # fmt: skip
    test_file: str | None = option(
        None,
        "Test text from this file (with examples: these examples), scored once after "
        "training.",
        flag="--test", path="any", shown_default="none",
    )  # fmt: skip
    encoding: str | None = option(
        None,
        "Read the text files in this encoding (e.g. cp1252, gb18030) instead of detecting it.",
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
    reverse: bool = option(
        False,
        "Train on the text read backwards, token by token (each example reversed): a backward "
        "language model, which starts the backward direction of a --bidirectional classifier.",
    )
    # Where catalogue books are downloaded; set by the caller, not on the command line.
    corpus_dir: str = str(DEFAULT_CORPUS_DIR)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __post_init__(self) -> None:
        check_types(self)
        check_format(self.labels, self.examples)
        columns = (self.text_column, self.label_column) != ("text", "label")
        if columns and self.labels != "table":  # they would be ignored without a word
            raise ConfigError("--text-column and --label-column name the columns of --labels table")

    @property
    def example_unit(self) -> str | None:
        """What one example is ("lines", "files", "rows"), or None for continuous text."""
        if self.labels == "table":
            return "rows"
        return self.examples or ("lines" if self.labels else None)

    def splits(self) -> SplitConfig:
        return SplitConfig(
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            val_file=self.val_file,
            test_file=self.test_file,
        )
