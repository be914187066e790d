"""Ids and batches: books → token ids (cached) → the batches a model trains on.

`prepare.py` reads, splits and encodes books through the token cache (`cache.py`);
`batches.py` cuts an id array into batches (sequential or random).
"""

from .batches import (
    Batch,
    as_id_array,
    batches_per_epoch,
    evaluation_batches,
    min_tokens_for_one_batch,
    random_batches,
    sequential_batches,
)
from .options import DataOptions
from .prepare import PreparedData, prepare_data

__all__ = [
    "Batch",
    "DataOptions",
    "PreparedData",
    "as_id_array",
    "batches_per_epoch",
    "evaluation_batches",
    "min_tokens_for_one_batch",
    "prepare_data",
    "random_batches",
    "sequential_batches",
]
