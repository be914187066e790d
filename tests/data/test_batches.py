import numpy as np
import pytest
import torch

from charlm.data import evaluation_batches, random_batches, sequential_batches
from charlm.errors import CorpusError

IDS = np.arange(1000, dtype=np.int64)  # id == position, so a batch shows where it came from


@pytest.mark.parametrize("make", [sequential_batches, random_batches])
def test_batches_have_the_asked_shape_and_y_is_x_shifted(make):
    batches = list(make(IDS, 4, 7, seed=0))
    assert batches
    for x, y in batches:
        assert x.shape == y.shape == (4, 7)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(y, x + 1)


def test_sequential_rows_continue_across_batches():
    batches = list(sequential_batches(IDS, 4, 7, seed=3))
    for (x0, _), (x1, _) in zip(batches, batches[1:]):
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)


def test_sequential_streams_are_contiguous_blocks_of_the_corpus():
    batches = list(sequential_batches(IDS, 4, 7, seed=3))
    streams = torch.cat([x for x, _ in batches], dim=1)
    for row in streams:
        assert torch.equal(row, torch.arange(row[0], row[0] + len(row)))
    # the streams do not overlap: each starts after the one above it ends
    assert (streams[1:, 0] > streams[:-1, -1]).all()


def test_random_batches_do_not_overlap():
    starts = torch.cat([x[:, 0] for x, _ in random_batches(IDS, 4, 7, seed=1)])
    starts = starts.sort().values
    assert (starts[1:] - starts[:-1] >= 7).all()


@pytest.mark.parametrize("make", [sequential_batches, random_batches])
def test_same_seed_same_batches_other_seed_other_batches(make):
    first = [x for x, _ in make(IDS, 4, 7, seed=5)]
    again = [x for x, _ in make(IDS, 4, 7, seed=5)]
    other = [x for x, _ in make(IDS, 4, 7, seed=6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("make", [sequential_batches, random_batches])
def test_random_offset_changes_with_the_seed(make):
    offsets = {int(next(iter(make(IDS, 2, 10, seed=s)))[0].min()) % 10 for s in range(30)}
    assert len(offsets) > 3


@pytest.mark.parametrize("make", [sequential_batches, random_batches])
def test_a_corpus_of_exactly_one_batch_works_for_every_seed(make):
    ids = np.arange(4 * 7 + 1)
    for seed in range(10):
        assert len(list(make(ids, 4, 7, seed=seed))) == 1


@pytest.mark.parametrize("make", [sequential_batches, random_batches])
def test_too_short_a_corpus_is_a_clear_error(make):
    with pytest.raises(CorpusError, match="too few for one batch"):
        list(make(np.arange(20), 4, 7, seed=0))


def test_iterators_slice_memory_maps(tmp_path):
    path = tmp_path / "ids.npy"
    np.save(path, IDS.astype(np.uint16))
    mapped = np.load(path, mmap_mode="r")
    x, y = next(iter(sequential_batches(mapped, 4, 7, seed=0)))
    assert x.dtype == torch.int64 and torch.equal(y, x + 1)


def test_evaluation_batches_cover_every_token_in_order():
    ids = np.arange(103)
    xs = [x for x, _ in evaluation_batches(ids, 3, 10)]
    seen = torch.cat(xs, dim=1).flatten().sort().values
    assert torch.equal(seen, torch.arange(102))  # 103 tokens → 102 predictions, 34 per stream
