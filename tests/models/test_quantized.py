"""int8 models: close to the float model for every cell and head, refused where impossible."""

from __future__ import annotations

import pytest
import torch

from charlm.errors import ConfigError
from charlm.models import (
    CellSpec,
    ModelConfig,
    ScratchLSTM,
    build_model,
    cell_registry,
    convert,
)
from charlm.models import quantized as quantized_module
from charlm.models.quantized import MIN_INT8_WEIGHTS, Int8Linear, Int8Recurrent, quantize

VOCAB = 40
CASES = [
    {"cell": "lstm"},
    {"cell": "gru"},
    {"cell": "rnn"},
    {"cell": "rnn", "nonlinearity": "relu"},
    {"cell": "gru", "one_hot": True},
    {"cell": "lstm", "tie_weights": True, "embed_size": 32},
    {"cell": "gru", "softmax": "adaptive", "cutoffs": [10, 25]},
]


def model_for(settings: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"hidden_size": 32, "embed_size": 16, "num_layers": 2} | settings
    return build_model(ModelConfig(VOCAB, **options)).eval()


@pytest.mark.parametrize("settings", CASES, ids=lambda s: "-".join(map(str, s.values())))
def test_an_int8_model_predicts_what_the_float_model_predicts(settings):
    model = model_for(settings)
    int8 = quantize(model, min_weights=0)  # these small output layers too
    assert isinstance(int8.rnn, Int8Recurrent)
    assert not any(isinstance(m, torch.nn.Linear) for m in int8.head.modules())
    assert any(isinstance(m, Int8Linear) for m in int8.head.modules())
    tokens = torch.randint(0, VOCAB, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(tokens)[0].log_softmax(-1)
        got = int8(tokens)[0].log_softmax(-1)
        state, stepped = None, []
        for t in range(tokens.shape[1]):
            scores, state = int8.step(tokens[:, t], state)
            stepped.append(scores.log_softmax(-1))
    # 8-bit weights and inputs move each log-probability by a few hundredths at most.
    assert (got - want).abs().max() < 0.1
    assert (got - want).abs().mean() < 0.01
    assert (torch.stack(stepped, dim=1) - want).abs().max() < 0.1


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_an_int8_rnn_step_computes_what_its_layers_compute(nonlinearity, monkeypatch):
    # The step through PyTorch's operators, where charlm's C step was not built (that one is
    # tested in test_int8_step.py).
    model = model_for({"cell": "rnn", "nonlinearity": nonlinearity})
    int8 = quantize(model, min_weights=0, native=False)
    tokens = torch.randint(0, VOCAB, (3,), generator=torch.Generator().manual_seed(2))
    state = int8.begin_state(3) + 0.3
    with monkeypatch.context() as patched, torch.inference_mode():
        patched.setattr(Int8Recurrent, "_rnn", lambda *a: pytest.fail("a step called the layer"))
        stepped, stepped_state = int8.step(tokens, state)
    with torch.inference_mode():
        called, called_state = int8(tokens[:, None], state)
    # The step quantizes [x, h] and [W_ih W_hh] whole, the layer each part on its own scale:
    # 8-bit rounding apart (a wrong matrix or activation would be off by tenths).
    for mine, theirs in ((stepped, called[:, 0]), (stepped_state, called_state)):
        assert (mine - theirs).abs().max() < 0.03 and (mine - theirs).abs().mean() < 0.005


def test_an_output_layer_too_small_to_gain_stays_float32():
    characters = quantize(model_for({"cell": "lstm"}))  # 40 x 32: int8's call costs more
    assert isinstance(characters.head, torch.nn.Linear)
    torch.manual_seed(0)
    words = build_model(ModelConfig(4096, hidden_size=128, embed_size=16)).eval()
    assert words.head.weight.numel() >= MIN_INT8_WEIGHTS
    assert isinstance(quantize(words).head, Int8Linear)


def test_quantizing_copies_the_model_and_leaves_the_random_stream_alone():
    model = model_for({"cell": "lstm"})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    int8 = quantize(model)
    draw = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(1), draw)
    assert int8 is not model and not int8.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert quantize(int8) is int8


def test_what_cannot_be_quantized_is_refused_with_the_reason(monkeypatch):
    model = model_for({"cell": "lstm"})
    with pytest.raises(ConfigError, match="unknown quantization"):
        quantize(model, "int4")
    with pytest.raises(ConfigError, match="CPU only"):
        quantize(model.to("meta"))
    # The scratch implementation computes its own equations: int8 would silently swap them
    # for PyTorch's kernels. Its weights are PyTorch's, so converting first is the way.
    with pytest.raises(ConfigError, match="--impl torch --quantize int8"):
        quantize(model_for({"cell": "lstm", "impl": "scratch"}))
    assert isinstance(
        quantize(convert(model_for({"cell": "lstm", "impl": "scratch"}), "torch")).rnn,
        Int8Recurrent,
    )
    # A cell PyTorch has no layer for (scratch only) has no int8 kernels either.
    no_reference = cell_registry(CellSpec("lstm", ScratchLSTM, None))
    monkeypatch.setattr(quantized_module, "CELLS", no_reference)
    with pytest.raises(ConfigError, match="cells PyTorch implements"):
        quantize(model_for({"cell": "lstm", "impl": "scratch"}))


def test_an_int8_labelled_model_keeps_its_labels():
    model = model_for({"cell": "lstm", "end_token": True, "num_labels": 3,
                       "label_input": "every-step"})  # fmt: skip
    int8 = quantize(model)
    tokens = torch.randint(0, VOCAB - 1, (3, 10), generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2])
    with torch.inference_mode():
        want = model(tokens, labels=labels)[0].log_softmax(-1)
        got = int8(tokens, labels=labels)[0].log_softmax(-1)
        stepped, _ = int8.step(tokens[:, 0], None, labels=labels)
    assert (got - want).abs().max() < 0.1
    # Inputs are quantized per call: one step's scale differs a little from a sequence's.
    assert (stepped.log_softmax(-1) - want[:, 0]).abs().max() < 0.1
