"""Tokenizers and the registry that finds them by name.

Built-ins (char, byte, word, bpe, wordpiece, unigram, hf) are registered by reference and
imported on first use; code can add its own with `register`; installed packages add theirs
through the `charlm.tokenizers` entry-point group, found lazily the first time a name is
looked up.
"""

from .base import UNKNOWN_POLICIES, Option, StreamDecoder, Tokenizer
from .registry import (
    ENTRY_POINT_GROUP,
    TokenizerInfo,
    available_tokenizers,
    get_tokenizer_class,
    register,
    reload_plugins,
    tokenizer_from_state,
    tokenizer_origin,
    tokenizer_package,
    train_tokenizer,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "UNKNOWN_POLICIES",
    "Option",
    "StreamDecoder",
    "Tokenizer",
    "TokenizerInfo",
    "available_tokenizers",
    "get_tokenizer_class",
    "register",
    "reload_plugins",
    "tokenizer_from_state",
    "tokenizer_origin",
    "tokenizer_package",
    "train_tokenizer",
]
