"""The classifier on the recurrent encoder: padded rows read as packed ones, both directions,
pooling, LM weights."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from charlm.data import pad_examples
from charlm.errors import ConfigError
from charlm.models import ModelConfig, RNNClassifier, build_model, copy_language_model
from charlm.models.classifier import lengths_of
from charlm.models.padded import last_states, run_padded


def classifier(cell="lstm", pooling="concat", bidirectional=True, layers=2, **extra):
    torch.manual_seed(0)
    config = ModelConfig(
        12, cell=cell, num_layers=layers, hidden_size=6, embed_size=5, dropout=0.0,
        task="classify", bidirectional=bidirectional, pooling=pooling, end_token=True,
        num_labels=3, **extra,
    )  # fmt: skip
    return build_model(config).eval()


def logits_of(model, examples):
    batch = pad_examples(examples, end_id=11)
    return model(batch.inputs, lengths_of(batch.mask))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "concat"])
def test_an_example_scores_the_same_alone_or_padded_in_a_batch(cell, pooling):
    model = classifier(cell, pooling)
    examples = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 1, 2], [3]]
    together = logits_of(model, examples)
    for row, example in enumerate(examples):
        alone = logits_of(model, [example])[0]
        torch.testing.assert_close(together[row], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_rows_read_as_packed_rows_do(cell, bidirectional):
    """The padded encoder (fast on a CPU) equals PyTorch's packed one, state by state."""
    rnn = classifier(cell, bidirectional=bidirectional, layers=2).rnn
    torch.manual_seed(2)
    inputs, lengths = torch.randn(3, 7, 5), torch.tensor([7, 2, 4])
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    packed_outputs, h_n = rnn(packed)
    expected, _ = pad_packed_sequence(packed_outputs, batch_first=True)
    h_n = h_n[0] if cell == "lstm" else h_n
    outputs = run_padded(rnn, inputs, lengths)
    real = (torch.arange(7)[None, :] < lengths[:, None])[:, :, None]
    torch.testing.assert_close(outputs * real, expected, atol=1e-6, rtol=1e-5)
    directions = 2 if bidirectional else 1
    # The last layer's h_n of every direction: h_n[-1] alone is the backward one only.
    joined = torch.cat(list(h_n[-directions:]), dim=-1)
    torch.testing.assert_close(last_states(outputs, lengths, directions), joined)


def test_a_bidirectional_model_reads_both_ways():
    model = classifier("lstm", "last")
    forward = logits_of(model, [[1, 2, 3, 4]])
    backward = logits_of(model, [[4, 3, 2, 1]])
    assert not torch.allclose(forward, backward)


def test_the_layer_groups_cover_every_parameter_once():
    model = classifier(layers=2)
    groups = model.parameter_groups()
    assert len(groups) == 4  # embedding, two recurrent layers, head
    flat = [id(p) for group in groups for p in group]
    assert sorted(flat) == sorted(id(p) for p in model.parameters())


def lm(layers=2, **extra):
    return build_model(ModelConfig(11, cell="lstm", num_layers=layers, hidden_size=6,
                                   embed_size=5, dropout=0.0, **extra)).eval()  # fmt: skip


def test_from_language_models_each_direction_first_computes_its_lm():
    torch.manual_seed(1)
    forward_lm, backward_lm = lm(), lm()
    with torch.no_grad():  # one embedding up to a linear map: the backward LM's maps exactly
        backward_lm.embedding.weight.copy_(forward_lm.embedding.weight @ torch.randn(5, 5))
    model = classifier("lstm", "last")
    copy_language_model(model, forward_lm, backward_lm)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    outputs, _ = model.rnn(model.embedding(ids))  # (1, 5, 2·hidden)
    hidden = model.config.hidden_size
    ahead, _ = forward_lm.rnn(forward_lm.embedding(ids))
    back, _ = backward_lm.rnn(backward_lm.embedding(ids.flip(1)))  # read right to left
    torch.testing.assert_close(outputs[..., :hidden], ahead)
    torch.testing.assert_close(outputs[..., hidden:], back.flip(1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.embedding.weight[:11], forward_lm.embedding.weight)


def test_a_language_model_of_another_shape_is_refused():
    with pytest.raises(ConfigError, match="2-layer lstm of 6 units"):
        copy_language_model(classifier(layers=1), lm(layers=2))


def test_a_backward_lm_needs_a_bidirectional_classifier():
    with pytest.raises(ConfigError, match="--bidirectional"):
        copy_language_model(classifier(bidirectional=False), lm(), lm())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"bidirectional": True}, "needs --task classify"),
        ({"task": "classify", "impl": "scratch", "end_token": True, "num_labels": 2}, "scratch"),
        ({"task": "classify", "end_token": True, "num_labels": 1}, "two labels"),
        ({"task": "classify", "pooling": "sum"}, "unknown pooling"),
    ],
)
def test_settings_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(10, **settings)


def test_a_classifier_config_rebuilds_a_classifier():
    model = classifier()
    assert isinstance(build_model(ModelConfig.from_dict(model.config.to_dict())), RNNClassifier)


def test_int8_quantization_refuses_a_classifier_in_one_line():
    from charlm.models.quantized import quantize

    with pytest.raises(ConfigError, match="classifier"):
        quantize(classifier(), "int8")
