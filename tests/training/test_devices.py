"""Choosing the device and the number of CPU threads."""

from __future__ import annotations

import pytest
import torch

from charlm.checkpoint import load_checkpoint
from charlm.device import cpu_has_bf16_lstm, resolve_device, set_threads
from charlm.errors import ConfigError
from charlm.training import TrainConfig
from charlm.training.run import train_book


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_asking_for_a_missing_accelerator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="use auto, cpu, cuda, mps"):
        resolve_device("tpu")


def test_threads_sets_torch_threads_for_the_run(tiny_book, tmp_path):
    before = torch.get_num_threads()
    try:
        config = TrainConfig(batch_size=4, seq_len=16, max_steps=1)
        train_book(
            tiny_book,
            out=tmp_path / "run",
            training=config,
            device="cpu",
            threads=1,
            model=dict(hidden_size=8, num_layers=1),
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="--threads"):
        set_threads(0)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_bf16_lstm(), reason="this CPU has no bfloat16 LSTM kernel")
def test_bf16_autocast_trains_on_the_cpu_and_saves_fp32_weights(tiny_book, tmp_path):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=40, precision="bf16", lr=0.01)
    trained = train_book(
        tiny_book,
        out=tmp_path / "run",
        training=config,
        device="cpu",
        model=dict(hidden_size=32, num_layers=1),
    )
    assert trained.result.val_perplexity < 15  # the untrained model is about 25 perplexed
    model = load_checkpoint(trained.checkpoint).model
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_on_a_cpu_without_the_kernel_is_a_clear_error(tiny_book, tmp_path, monkeypatch):
    monkeypatch.setattr("charlm.device.cpu_has_bf16_lstm", lambda: False)
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=2, precision="bf16")
    with pytest.raises(ConfigError, match="no bfloat16 instructions .* use fp32"):
        train_book(tiny_book, out=tmp_path / "run", training=config, device="cpu")
    assert not (tmp_path / "run" / "config.json").exists()


def test_fp16_on_the_cpu_is_a_clear_error(tiny_book, tmp_path):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=2, precision="fp16")
    with pytest.raises(ConfigError, match="needs a CUDA GPU; use fp32 or bf16"):
        train_book(tiny_book, out=tmp_path / "run", training=config, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cuda(tiny_book, tmp_path, precision):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=30, precision=precision, lr=0.01)
    trained = train_book(
        tiny_book,
        out=tmp_path / "run",
        training=config,
        device="cuda",
        model=dict(hidden_size=32, num_layers=1),
    )
    assert trained.result.val_perplexity < 30
