"""The allocator tuning: applied by CPU training on glibc, a clean no-op elsewhere."""

from __future__ import annotations

import ctypes
import sys

import pytest
import torch

from charlm.training import TrainConfig, allocator, train
from charlm.training import loop as training
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, tiny_model


@pytest.mark.skipif(allocator.glibc() is None, reason="mallopt is glibc's")
def test_glibc_accepts_the_settings():
    # mallopt returns 0 for a value out of range: the thresholds must be ones glibc takes.
    assert allocator.keep_freed_memory() is True


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): hblks is the number of blocks mmap serves now."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def mapped_blocks() -> int:
    mallinfo2 = allocator.glibc().mallinfo2
    mallinfo2.restype = MallInfo2
    return mallinfo2().hblks


@pytest.mark.skipif(
    allocator.glibc() is None or not hasattr(allocator.glibc(), "mallinfo2"),
    reason="mallinfo2 is glibc's (2.33 and later)",
)
def test_a_block_above_every_mmap_threshold_comes_from_the_heap():
    # oneDNN's LSTM workspace (51 MB a layer at 2 x 256, 32 x 100) is above the 32 MiB that
    # glibc's threshold can reach: only turning mmap off keeps it from being mapped and
    # page-faulted afresh at every step.
    assert allocator.keep_freed_memory(allocator.TUNING) is True
    before = mapped_blocks()
    # Larger than the free memory the heap may keep (its trim threshold), so that the second
    # block cannot reuse the first's freed space either: only mmap or the heap can serve it.
    size = allocator.TRIM_THRESHOLD + 2**20
    block = torch.empty(size, dtype=torch.uint8)  # pages untouched: no memory is used
    assert mapped_blocks() == before
    del block
    allocator.keep_freed_memory()  # the thresholds alone map such a block again
    block = torch.empty(size, dtype=torch.uint8)
    assert mapped_blocks() == before + 1
    del block


def test_elsewhere_it_changes_nothing_and_says_so(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


def test_a_model_whose_logits_pass_the_largest_threshold_keeps_the_mmap():
    # WikiText-2's default word model: 32 x 100 x 33,156 floats of logits, 424 MB a step.
    assert allocator.tuning_for(4 * 32 * 100 * 33_156) == allocator.HEAP_UP_TO_THRESHOLD
    assert allocator.tuning_for(4 * 32 * 100 * 65) == allocator.TUNING  # characters


@pytest.mark.slow
def test_cpu_training_applies_it(monkeypatch):
    calls = []
    monkeypatch.setattr(training, "keep_freed_memory", lambda s: calls.append(s) or True)
    tokenizer, ids = ids_of(TINY_TEXT)
    config = TrainConfig(batch_size=2, seq_len=4, epochs=1, max_steps=2)
    result = train(tiny_model(tokenizer.vocab_size), ids, None, config, device=torch.device("cpu"))
    assert calls == [allocator.TUNING] and result.steps == 2
