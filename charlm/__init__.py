"""charlm: character- and word-level recurrent language models for books.

import charlm
sampler = charlm.load("checkpoints/book")
print(sampler.generate(prefix="It was", length=300, temperature=0.8, seed=1))
"""

from charlm._version import __version__
from charlm.errors import CharlmError
from charlm.models import ModelConfig
from charlm.sampling import Sampler, SamplingOptions, Score, load
from charlm.tokenizers import Tokenizer, register
from charlm.training import DataOptions, RunSaver, TrainConfig, TrainedModel, train_book

register_tokenizer = register

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
