"""--init-range: every weight drawn uniformly from ±r, as Zaremba et al. initialise."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from tests.helpers import TINY_TRAIN_ARGS


@pytest.mark.parametrize("softmax, vocab", [("full", 50), ("adaptive", 3000)])
def test_every_parameter_is_uniform_within_the_range(softmax, vocab):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            vocab, embed_size=32, hidden_size=32, num_layers=2, init_range=0.1, softmax=softmax
        )  # fmt: skip
    )
    for name, parameter in model.named_parameters():
        parameter = parameter.detach()
        assert parameter.abs().max() <= 0.1, name
        if parameter.numel() >= 1000:  # a uniform draw fills the range
            assert parameter.abs().max() > 0.09, name
            assert float(parameter.std()) == pytest.approx(0.1 / 3**0.5, rel=0.1), name


def test_without_it_torch_initialises_as_before():
    torch.manual_seed(0)
    model = build_model(ModelConfig(50, embed_size=32, hidden_size=32))
    assert model.embedding.weight.std() > 0.5  # nn.Embedding draws from N(0, 1)


def test_a_bad_range_is_an_error():
    with pytest.raises(ConfigError, match="init_range must be positive"):
        ModelConfig(10, init_range=0.0)


@pytest.mark.slow
def test_cli_records_the_range(tiny_book, tmp_path):
    out = tmp_path / "ck"
    result = CliRunner().invoke(
        cli,
        ["train", str(tiny_book), "--out", str(out), *TINY_TRAIN_ARGS,
         "--max-steps", "1",
         "--init-range", "0.05"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model"]["init_range"] == 0.05
