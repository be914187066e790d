"""Ids and batches: books → token ids (cached) → the batches a model trains on.

`prepare.py` reads, splits and encodes books through the token cache (`cache.py`);
`batches.py` cuts an id array into batches (sequential or random).
`prepare_examples.py` reads, splits and encodes short examples (names, sentences) and their
labels; `examples.py` pads them into batches, one example per row (the third iterator).
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
from .examples import (
    PRIORS,
    ExampleBatch,
    ExampleIds,
    LabelSet,
    count_example_batches,
    example_batches,
    pad_examples,
)
from .options import DataOptions
from .prepare import PreparedData, prepare_data
from .prepare_examples import PreparedExamples, prepare_examples, read_example_set

__all__ = [
    "PRIORS",
    "Batch",
    "DataOptions",
    "ExampleBatch",
    "ExampleIds",
    "LabelSet",
    "PreparedData",
    "PreparedExamples",
    "as_id_array",
    "batches_per_epoch",
    "count_example_batches",
    "evaluation_batches",
    "example_batches",
    "min_tokens_for_one_batch",
    "pad_examples",
    "prepare_data",
    "prepare_examples",
    "random_batches",
    "read_example_set",
    "sequential_batches",
]
