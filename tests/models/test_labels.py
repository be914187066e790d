"""Models of examples: the end token, and conditioning on a label (token or every step)."""

from __future__ import annotations

import pytest
import torch

from charlm.errors import ConfigError
from charlm.models import LABEL_INPUTS, ModelConfig, build_model

VOCAB = 8  # seven tokens and the end token, id 7
END = VOCAB - 1


def labelled(label_input: str, **settings):
    torch.manual_seed(0)
    config = ModelConfig(
        VOCAB, embed_size=6, hidden_size=8, num_layers=1, dropout=0.0, end_token=True,
        num_labels=3, label_input=label_input, **settings,
    )  # fmt: skip
    return build_model(config).eval()


@pytest.mark.parametrize("label_input", LABEL_INPUTS)
def test_the_label_changes_the_prediction(label_input):
    model = labelled(label_input)
    tokens = torch.tensor([[END, 1, 2, 3]])
    with torch.no_grad():
        first, _ = model(tokens, labels=torch.tensor([0]))
        second, _ = model(tokens, labels=torch.tensor([1]))
    assert not torch.allclose(first, second)


def test_a_label_token_is_read_where_the_example_starts_only():
    # Without a start token in the input, the label has nothing to replace.
    model = labelled("token")
    tokens = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        first, _ = model(tokens, labels=torch.tensor([0]))
        second, _ = model(tokens, labels=torch.tensor([2]))
    assert torch.allclose(first, second)


def test_one_label_serves_every_row():
    model = labelled("every-step")
    tokens = torch.tensor([[END, 1, 2], [END, 3, 4]])
    with torch.no_grad():
        shared, _ = model(tokens, labels=torch.tensor([2]))
        each, _ = model(tokens, labels=torch.tensor([2, 2]))
    assert torch.allclose(shared, each)


def test_labels_are_required_exactly_when_the_model_has_them():
    with pytest.raises(ConfigError, match="give one for every row"):
        labelled("token")(torch.tensor([[END, 1]]))
    plain = build_model(ModelConfig(VOCAB, hidden_size=8, num_layers=1, end_token=True))
    with pytest.raises(ConfigError, match="trained without labels"):
        plain(torch.tensor([[END, 1]]), labels=torch.tensor([0]))


def test_the_end_token_is_the_last_id():
    assert ModelConfig(VOCAB, end_token=True).end_id == END
    assert ModelConfig(VOCAB).end_id is None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"num_labels": 2}, "needs the end token"),
        ({"num_labels": -1, "end_token": True}, "num_labels"),
        ({"label_input": "sideways", "end_token": True}, "unknown label input"),
        ({"label_size": 0}, "label_size must be at least 1"),
    ],
)
def test_impossible_label_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(VOCAB, **settings)


def test_a_labelled_model_round_trips_its_config():
    config = labelled("every-step", label_size=5).config
    assert ModelConfig.from_dict(config.to_dict()) == config
    weights = build_model(config).state_dict()
    assert weights["label_embedding.weight"].shape == (3, 5)
    assert weights["rnn.weight_ih_l0"].shape[1] == 6 + 5  # the label joined to each input
