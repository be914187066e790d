"""charlm: character- and word-level recurrent language models for books.

import charlm
sampler = charlm.load("checkpoints/book")
print(sampler.generate(prefix="It was", length=300, temperature=0.8, seed=1))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from charlm._version import __version__
from charlm.errors import CharlmError

# The public names and the module each comes from. They are imported on first use (PEP 562),
# so that `import charlm` (and with it every `charlm` command) does not pay for PyTorch until
# something needs it.
_LAZY = {
    "DataOptions": "charlm.training",
    "ModelConfig": "charlm.models",
    "RunSaver": "charlm.training",
    "Sampler": "charlm.sampling",
    "SamplingOptions": "charlm.sampling",
    "Score": "charlm.sampling",
    "Tokenizer": "charlm.tokenizers",
    "TrainConfig": "charlm.training",
    "TrainedModel": "charlm.training",
    "load": "charlm.sampling",
    "register_tokenizer": "charlm.tokenizers",
    "train_book": "charlm.training",
}
_RENAMED = {"register_tokenizer": "register"}

if TYPE_CHECKING:
    from charlm.models import ModelConfig
    from charlm.sampling import Sampler, SamplingOptions, Score, load
    from charlm.tokenizers import Tokenizer
    from charlm.tokenizers import register as register_tokenizer
    from charlm.training import DataOptions, RunSaver, TrainConfig, TrainedModel, train_book


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'charlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "CharlmError",
    "DataOptions",
    "ModelConfig",
    "RunSaver",
    "Sampler",
    "SamplingOptions",
    "Score",
    "Tokenizer",
    "TrainConfig",
    "TrainedModel",
    "__version__",
    "load",
    "register_tokenizer",
    "train_book",
]
