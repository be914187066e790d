"""Sizes beyond which charlm refuses a file or a setting instead of trying to use it.

Checkpoints and tokenizer files come from the internet. Each limit is far above anything a
real model needs, and low enough that a hostile or damaged file is refused in a moment with
one line, instead of exhausting memory while it is parsed or while the model is built.
"""

from __future__ import annotations

# A checkpoint's config.json: model and training settings plus the tokenizer state. A word
# vocabulary of a million words or a large tokenizer.json takes tens of MB.
MAX_CONFIG_BYTES = 256 * 1024 * 1024
# A Hugging Face tokenizer.json: the largest published ones are around 35 MB.
MAX_TOKENIZER_FILE_BYTES = 128 * 1024 * 1024
# Tokens in a vocabulary: the largest published tokenizers have about 260,000; ids are
# stored as uint32 and the model needs a row per token.
MAX_VOCAB_SIZE = 4 * 1024 * 1024
# The book catalogue (corpora/catalog.toml): a few hundred bytes a book.
MAX_CATALOG_BYTES = 16 * 1024 * 1024
# A run's metrics log: about 250 bytes a record, so a million records take 250 MB.
MAX_METRICS_LOG_BYTES = 1024 * 1024 * 1024


def too_large(what: str, size: int, limit: int, unit: str = "bytes") -> str:
    """The one-line reason for refusing `what`."""
    return f"{what} has {size:,} {unit}, more than charlm accepts ({limit:,})"


# A Hugging Face tokenizer from a file or a checkpoint (see tokenizers/hf_limits.py): how many
# times longer its normaliser may make a text (real ones: at most 3, for CJK text under BERT's),
# plus a few characters for short texts; how much one normaliser step may lengthen a text (the
# longest Unicode decomposition is 18 characters); and the slowest encoding accepted: a grace
# period plus one second per MIN_ENCODE_RATE characters (real tokenizers encode 100 times
# faster than that on a busy CPU).
MAX_NORMALIZED_GROWTH = 16
NORMALIZED_EXTRA_CHARS = 64
MAX_NORMALIZER_STEP_GROWTH = 64
MIN_ENCODE_RATE = 20_000
ENCODE_GRACE_SECONDS = 10.0
