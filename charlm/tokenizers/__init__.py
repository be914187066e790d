"""Tokenizers and the registry that finds them by name.

Built-ins register here; code can add its own with `register`; installed packages add theirs
through the `charlm.tokenizers` entry-point group, loaded lazily the first time a name is
looked up.
"""

from .base import StreamDecoder, Tokenizer
from .registry import (
    TokenizerInfo,
    available_tokenizers,
    get_tokenizer_class,
    register,
    tokenizer_from_state,
)

__all__ = [
    "StreamDecoder",
    "Tokenizer",
    "TokenizerInfo",
    "available_tokenizers",
    "get_tokenizer_class",
    "register",
    "tokenizer_from_state",
]
