"""RNNLM.step: one token per row without calling the layer, the numbers of forward."""

from __future__ import annotations

import pytest
import torch

from charlm.models import ModelConfig, build_model

CASES = [  # cell, nonlinearity, implementation, rows, hidden units
    ("lstm", "tanh", "torch", 3, 24),  # on its weights laid out for stepping
    ("lstm", "tanh", "torch", 5, 24),
    ("lstm", "tanh", "torch", 5, 512),  # many rows of a wide LSTM too
    ("gru", "tanh", "torch", 5, 24),
    ("rnn", "tanh", "torch", 3, 24),
    ("rnn", "relu", "torch", 3, 24),
    ("lstm", "tanh", "scratch", 3, 24),  # steps through its own equations
]


@pytest.mark.parametrize(("cell", "nonlinearity", "impl", "rows", "hidden"), CASES)
def test_stepping_token_by_token_gives_the_scores_of_the_whole_sequence(
    cell, nonlinearity, impl, rows, hidden
):
    torch.manual_seed(0)
    config = ModelConfig(
        30, cell=cell, nonlinearity=nonlinearity, impl=impl, hidden_size=hidden, embed_size=8
    )
    model = build_model(config).eval()
    tokens = torch.randint(0, 30, (rows, 12))
    with torch.inference_mode():
        whole, whole_state = model(tokens)
        state, steps = None, []
        for t in range(tokens.shape[1]):
            scores, state = model.step(tokens[:, t], state)
            steps.append(scores)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole, atol=1e-5, rtol=1e-5)
    for got, want in zip(torch.utils._pytree.tree_leaves(state),
                         torch.utils._pytree.tree_leaves(whole_state)):  # fmt: skip
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (model._fused is not None) == (impl == "torch")


def test_stepping_a_one_hot_model_reads_one_hot_vectors():
    torch.manual_seed(0)
    model = build_model(ModelConfig(20, cell="gru", one_hot=True, hidden_size=16)).eval()
    tokens = torch.randint(0, 20, (2, 5))
    with torch.inference_mode():
        whole, _ = model(tokens)
        state = None
        for t in range(5):
            scores, state = model.step(tokens[:, t], state)
    torch.testing.assert_close(scores, whole[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("label_input", ["token", "every-step"])
def test_stepping_a_labelled_model_reads_each_rows_label(label_input):
    torch.manual_seed(0)
    config = ModelConfig(
        20, hidden_size=16, embed_size=8, end_token=True, num_labels=3, label_input=label_input
    )
    model = build_model(config).eval()
    end = model.config.end_id
    tokens = torch.cat([torch.full((3, 1), end), torch.randint(0, end, (3, 6))], dim=1)
    labels = torch.tensor([2, 0, 1])
    with torch.inference_mode():
        whole, _ = model(tokens, labels=labels)
        state, steps = None, []
        for t in range(tokens.shape[1]):
            scores, state = model.step(tokens[:, t], state, labels=labels)
            steps.append(scores)
        other, _ = model.step(tokens[:, 0], None, labels=torch.tensor([0, 0, 0]))
    torch.testing.assert_close(torch.stack(steps, dim=1), whole, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(other[0], steps[0][0])  # the label changes what follows


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_steps_layout_of_the_weights_follows_the_layer_when_it_changes(cell):
    torch.manual_seed(0)
    model = build_model(ModelConfig(30, cell=cell, hidden_size=24, embed_size=8)).eval()
    tokens = torch.randint(0, 30, (2, 4))
    with torch.inference_mode():
        model.step(tokens[:, 0])  # lays the weights out for stepping
    with torch.no_grad():
        model.rnn.weight_hh_l1.mul_(2.0)  # changed in place, as an optimizer step does
        model.rnn.bias_ih_l0.add_(0.5)
    with torch.inference_mode():
        whole, _ = model(tokens)
        state = None
        for t in range(tokens.shape[1]):
            scores, state = model.step(tokens[:, t], state)
    torch.testing.assert_close(scores, whole[:, -1], atol=1e-5, rtol=1e-5)
