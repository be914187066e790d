"""The allocator tuning: applied by CPU training on glibc, a clean no-op elsewhere."""

from __future__ import annotations

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


def test_elsewhere_it_changes_nothing_and_says_so(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


@pytest.mark.slow
def test_cpu_training_applies_it(monkeypatch):
    calls = []
    monkeypatch.setattr(training, "keep_freed_memory", lambda: calls.append(1) or True)
    tokenizer, ids = ids_of(TINY_TEXT)
    config = TrainConfig(batch_size=2, seq_len=4, epochs=1, max_steps=2)
    result = train(tiny_model(tokenizer.vocab_size), ids, None, config, device=torch.device("cpu"))
    assert calls == [1] and result.steps == 2
