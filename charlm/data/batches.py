"""Token-id arrays and the two batch iterators of truncated backpropagation through time.

Both iterators take a 1-D array of ids (a NumPy array, a memory map or a tensor; it is only
sliced, never copied whole) and yield `(X, Y)` int64 tensors of shape (batch_size, seq_len),
where `Y` is `X` shifted one token to the left: `Y[b, t]` is the token after `X[b, t]`.

Sequential: the corpus is cut into `batch_size` contiguous streams, one per batch row, so
row b of batch k+1 continues exactly where row b of batch k stopped. With offset o,
batch size 4 and stream length L (letters are token positions):

    row 0: o       .. o+L-1      | batch 0 = columns [0, T), batch 1 = [T, 2T), ...
    row 1: o+L     .. o+2L-1     |
    row 2: o+2L    .. o+3L-1     |
    row 3: o+3L    .. o+4L-1     |

which is why the trainer may carry the hidden state from one batch to the next.

Random: non-overlapping subsequences of length T starting at a random offset, in shuffled
order; neighbouring rows have nothing to do with each other, so the state starts fresh.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from charlm.errors import CorpusError

Batch = tuple[torch.Tensor, torch.Tensor]


def as_id_array(ids: np.ndarray | torch.Tensor | list[int]) -> np.ndarray:
    """A 1-D NumPy view of `ids` (no copy for arrays and memory maps)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"token ids must be 1-D, got shape {array.shape}")
    return array


def _to_tensor(block: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(block, dtype=np.int64))


def _check_sizes(batch_size: int, seq_len: int) -> None:
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")


def min_tokens_for_one_batch(batch_size: int, seq_len: int) -> int:
    """The shortest id array that yields one full batch (the shift needs one token more)."""
    return batch_size * seq_len + 1


def sequential_batches(
    ids: np.ndarray | torch.Tensor | list[int],
    batch_size: int,
    seq_len: int,
    *,
    seed: int | None = None,
) -> Iterator[Batch]:
    """One epoch of batches whose rows continue from batch to batch (see module docstring)."""
    _check_sizes(batch_size, seq_len)
    ids = as_id_array(ids)
    offset = _draw_offset(np.random.default_rng(seed), len(ids), batch_size, seq_len)
    stream_len = (len(ids) - offset - 1) // batch_size
    num_batches = stream_len // seq_len
    span = batch_size * stream_len
    xs = ids[offset : offset + span].reshape(batch_size, stream_len)  # a view, not a copy
    ys = ids[offset + 1 : offset + 1 + span].reshape(batch_size, stream_len)
    for start in range(0, num_batches * seq_len, seq_len):
        yield _to_tensor(xs[:, start : start + seq_len]), _to_tensor(ys[:, start : start + seq_len])


def random_batches(
    ids: np.ndarray | torch.Tensor | list[int],
    batch_size: int,
    seq_len: int,
    *,
    seed: int | None = None,
) -> Iterator[Batch]:
    """One epoch of batches of non-overlapping subsequences, in shuffled order."""
    _check_sizes(batch_size, seq_len)
    ids = as_id_array(ids)
    rng = np.random.default_rng(seed)
    offset = _draw_offset(rng, len(ids), batch_size, seq_len)
    starts = np.arange(offset, len(ids) - seq_len, seq_len)  # each start leaves room for Y
    num_batches = len(starts) // batch_size
    starts = rng.permutation(starts)[: num_batches * batch_size]
    window = np.arange(seq_len + 1)
    for first in range(0, len(starts), batch_size):
        rows = ids[starts[first : first + batch_size, None] + window]  # (batch, seq_len + 1)
        yield _to_tensor(rows[:, :-1]), _to_tensor(rows[:, 1:])


def _draw_offset(rng: np.random.Generator, num_tokens: int, batch_size: int, seq_len: int) -> int:
    # A random start each epoch shows the model every split point of the text over time.
    # The offset is capped so that a short corpus still yields one full batch whatever the seed.
    slack = num_tokens - min_tokens_for_one_batch(batch_size, seq_len)
    if slack < 0:
        raise CorpusError(_too_short(num_tokens, batch_size, seq_len))
    return int(rng.integers(min(seq_len, slack + 1)))


def batches_per_epoch(num_tokens: int, batch_size: int, seq_len: int) -> int:
    """How many batches one epoch of either iterator yields at most."""
    return max(0, (num_tokens - 1) // (batch_size * seq_len))


def evaluation_batches(
    ids: np.ndarray | torch.Tensor | list[int], num_streams: int, seq_len: int
) -> Iterator[Batch]:
    """Every token of `ids` in order, as `num_streams` streams, the last chunk possibly short.

    Used for validation: no random offset, and the tail of each stream is kept, so all but
    fewer than `num_streams` tokens are scored.
    """
    ids = as_id_array(ids)
    num_streams = max(1, min(num_streams, (len(ids) - 1) // 2 or 1))
    stream_len = (len(ids) - 1) // num_streams
    if stream_len < 1:
        raise CorpusError(f"the text has {len(ids)} tokens; at least 2 are needed to score it")
    span = num_streams * stream_len
    xs = ids[:span].reshape(num_streams, stream_len)
    ys = ids[1 : span + 1].reshape(num_streams, stream_len)
    for start in range(0, stream_len, seq_len):
        yield _to_tensor(xs[:, start : start + seq_len]), _to_tensor(ys[:, start : start + seq_len])


def _too_short(num_tokens: int, batch_size: int, seq_len: int) -> str:
    need = min_tokens_for_one_batch(batch_size, seq_len)
    return (
        f"the training text has {num_tokens} tokens, too few for one batch of "
        f"{batch_size} x {seq_len} (needs {need}); use a longer book or a smaller "
        "--batch-size / --seq-len"
    )
