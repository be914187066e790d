"""Dropout placements, weight tying and the RNN nonlinearity, and that checkpoints keep them."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from charlm.checkpoint import load_checkpoint, save_checkpoint
from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.tokenizers import get_tokenizer_class


def test_tied_weights_share_one_matrix_and_survive_a_checkpoint(tmp_path):
    tok = get_tokenizer_class("char").train("abcdef ghij\n")
    config = ModelConfig(
        vocab_size=tok.vocab_size, embed_size=16, hidden_size=16, num_layers=1, tie_weights=True
    )
    model = build_model(config)
    assert model.head.weight is model.embedding.weight
    untied = build_model(
        ModelConfig(vocab_size=tok.vocab_size, embed_size=16, hidden_size=16, num_layers=1)
    )
    saved = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters())
    assert saved == tok.vocab_size * 16

    save_checkpoint(tmp_path / "ck", model, tok)
    loaded = load_checkpoint(tmp_path / "ck").model
    assert loaded.config.tie_weights
    assert loaded.head.weight is loaded.embedding.weight
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_tied_weights_with_different_sizes_is_a_clear_error():
    with pytest.raises(ConfigError, match="--embed must equal --hidden"):
        ModelConfig(vocab_size=10, embed_size=8, hidden_size=16, tie_weights=True)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_nonlinearity_is_used_and_recorded(nonlinearity):
    config = ModelConfig(
        vocab_size=10,
        cell="rnn",
        nonlinearity=nonlinearity,
        embed_size=4,
        hidden_size=8,
        num_layers=1,
    )
    model = build_model(config)
    assert model.rnn.nonlinearity == nonlinearity
    assert ModelConfig.from_dict(config.to_dict()) == config
    _, state = model(torch.randint(0, 10, (2, 5)))
    if nonlinearity == "relu":
        assert (state >= 0).all()  # the hidden state is a ReLU output
    else:
        assert (state.abs() <= 1).all()


def test_nonlinearity_on_gated_cells_is_an_error():
    with pytest.raises(ConfigError, match="--model rnn only"):
        ModelConfig(vocab_size=10, cell="lstm", nonlinearity="relu")


def test_embedding_and_output_dropout_act_in_training_only():
    config = ModelConfig(
        vocab_size=10,
        embed_size=8,
        hidden_size=8,
        num_layers=1,
        dropout=0.0,
        embed_dropout=0.5,
        output_dropout=0.5,
    )
    model = build_model(config)
    tokens = torch.randint(0, 10, (4, 6))
    model.train()
    torch.manual_seed(0)
    a, _ = model(tokens)
    b, _ = model(tokens)
    assert not torch.allclose(a, b)  # fresh masks every call
    model.eval()
    c, _ = model(tokens)
    d, _ = model(tokens)
    assert torch.equal(c, d)


@pytest.mark.parametrize("name", ["embed_dropout", "output_dropout"])
def test_dropout_out_of_range_is_an_error(name):
    with pytest.raises(ConfigError, match=name):
        ModelConfig(vocab_size=10, **{name: 1.0})


def test_cli_records_model_options_in_the_checkpoint(tiny_book, tmp_path):
    out = tmp_path / "ck"
    args = (
        "--model rnn --nonlinearity relu --embed 12 --hidden 12 --layers 1 --tie-weights "
        "--embed-dropout 0.2 --output-dropout 0.3 --batch-size 4 --seq-len 8 --max-steps 2 "
        "--device cpu"
    )
    result = CliRunner().invoke(cli, ["train", str(tiny_book), "--out", str(out), *args.split()])
    assert result.exit_code == 0, result.output
    config = load_checkpoint(out).model.config
    assert (config.cell, config.nonlinearity, config.tie_weights) == ("rnn", "relu", True)
    assert (config.embed_dropout, config.output_dropout) == (0.2, 0.3)


def test_cli_tie_weights_size_mismatch_is_one_line(tiny_book, tmp_path):
    out = tmp_path / "ck"
    args = "--tie-weights --embed 8 --hidden 16 --max-steps 1 --batch-size 4 --seq-len 8"
    result = CliRunner().invoke(cli, ["train", str(tiny_book), "--out", str(out), *args.split()])
    assert result.exit_code == 2  # a usage error, found before the book is read
    assert "--embed must equal --hidden" in result.output
    assert "Traceback" not in result.output
