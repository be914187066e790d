import pytest
import torch

from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model, detach_state


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_forward_shapes_and_state(cell):
    model = build_model(
        ModelConfig(vocab_size=11, cell=cell, embed_size=5, hidden_size=8, num_layers=2)
    )
    tokens = torch.randint(0, 11, (3, 6))
    logits, state = model(tokens, model.begin_state(3))
    assert logits.shape == (3, 6, 11)
    states = state if isinstance(state, tuple) else (state,)
    assert len(states) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (2, 3, 8) for s in states)


def test_carried_state_equals_one_long_pass():
    model = build_model(ModelConfig(vocab_size=11, embed_size=5, hidden_size=8, dropout=0.0))
    tokens = torch.randint(0, 11, (2, 10))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], state)
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-6)


def test_detach_state_keeps_values_and_drops_the_graph():
    model = build_model(ModelConfig(vocab_size=5, embed_size=3, hidden_size=4))
    _, state = model(torch.randint(0, 5, (2, 3)))
    detached = detach_state(state)
    for before, after in zip(state, detached):
        assert before.requires_grad and not after.requires_grad
        assert torch.equal(before, after)


@pytest.mark.parametrize(
    "bad",
    [{"cell": "transformer"}, {"hidden_size": 0}, {"dropout": 1.0}, {"num_layers": 0}],
)
def test_bad_model_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        ModelConfig(vocab_size=5, **bad)


@pytest.mark.parametrize(
    "settings, layers",
    [
        (dict(num_layers=2), [1, 4, 4, 2]),  # embedding, two LSTM layers (4 tensors), head
        (dict(num_layers=1, num_labels=3, end_token=True), [2, 4, 2]),  # the label with tokens
        (dict(num_layers=1, tie_weights=True, embed_size=6), [0, 4, 2]),  # the tied matrix up
        (dict(num_layers=1, one_hot=True), [0, 4, 2]),
    ],
)
def test_the_layer_groups_of_a_language_model_cover_every_parameter_once(settings, layers):
    model = build_model(ModelConfig(11, cell="lstm", hidden_size=6, **settings))
    groups = model.parameter_groups()
    assert [len(group) for group in groups] == layers
    flat = [id(p) for group in groups for p in group]
    assert sorted(flat) == sorted(id(p) for p in model.parameters())
