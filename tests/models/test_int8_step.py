"""The int8 one-token step in C: the quantized equations, on both of its kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from charlm.models import ModelConfig, build_model, int8_step
from charlm.models.quantized import quantize

pytestmark = pytest.mark.skipif(
    not int8_step.available(),
    reason="charlm's C step was not built (no C compiler when charlm was installed)",
)

LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CASES = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]


def quantized(v: torch.Tensor) -> torch.Tensor:
    """Each row of v on its own symmetric 7-bit scale, as the C step quantizes x and h."""
    scale = v.abs().amax(dim=1, keepdim=True) / 63
    return torch.round(v * (1 / scale)) * scale.double()


def reference_step(layer: nn.Module, cell: str, x: torch.Tensor, state) -> tuple:
    """The step the C code takes, in float64: int8 weights (each matrix's own scale per
    row) times 7-bit x and h (one scale per row each), then PyTorch's cell equations."""
    lstm = cell == "lstm"
    h_all, c_all = (state[0], state[1]) if lstm else (state, None)
    hidden, cells = [], []
    for index in range(layer.num_layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(layer, f"{n}_l{index}").detach() for n in
                                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))  # fmt: skip
        (q_ih, s_ih), (q_hh, s_hh) = int8_step.symmetric_int8(w_ih), int8_step.symmetric_int8(w_hh)
        h = h_all[index]
        from_x = quantized(x) @ (q_ih.double() * s_ih.double()[:, None]).T + b_ih.double()
        from_h = quantized(h) @ (q_hh.double() * s_hh.double()[:, None]).T + b_hh.double()
        if lstm:
            i, f, g, o = (from_x + from_h).chunk(4, dim=1)
            c = f.sigmoid() * c_all[index].double() + i.sigmoid() * g.tanh()
            x = o.sigmoid() * c.tanh()
            cells.append(c)
        elif cell == "gru":
            size = h.shape[1]
            reset, update = (from_x[:, : 2 * size] + from_h[:, : 2 * size]).sigmoid().chunk(2, 1)
            candidate = (from_x[:, 2 * size :] + reset * from_h[:, 2 * size :]).tanh()
            x = (1 - update) * candidate + update * h.double()
        else:
            x = (
                (from_x + from_h).relu()
                if layer.nonlinearity == "relu"
                else (from_x + from_h).tanh()
            )
        hidden.append(x)
        x = x.float()
    return x, (torch.stack(hidden), torch.stack(cells)) if lstm else torch.stack(hidden)


def layer_and_inputs(cell: str, nonlinearity: str, rows: int = 3):
    torch.manual_seed(0)
    # 37 units: neither the columns (32) nor the rows of the kernel's blocks divide it.
    options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    layer = LAYERS[cell](20, 37, num_layers=2, batch_first=True, **options).eval()
    x = torch.randn(rows, 20) * 2
    h = torch.randn(2, rows, 37) * 0.5
    return layer, x, ((h, torch.randn(2, rows, 37)) if cell == "lstm" else h)


@pytest.mark.parametrize("portable", [False, True], ids=["auto", "portable"])
@pytest.mark.parametrize(("cell", "nonlinearity"), CASES, ids=lambda v: v)
def test_the_c_step_computes_the_quantized_equations(cell, nonlinearity, portable):
    layer, x, state = layer_and_inputs(cell, nonlinearity)
    step = int8_step.NativeStep(layer, cell, nonlinearity, portable=portable)
    output, new_state = step(x, state)
    want_output, want_state = reference_step(layer, cell, x, state)
    # The same integers; the gates' exponential is a polynomial (relative error < 2e-7).
    assert torch.allclose(output.double(), want_output.double(), atol=2e-5)
    for mine, theirs in zip(*(s if cell == "lstm" else (s,) for s in (new_state, want_state))):
        assert mine.shape == theirs.shape
        assert torch.allclose(mine.double(), theirs, atol=2e-5)


@pytest.mark.parametrize(("cell", "nonlinearity"), CASES, ids=lambda v: v)
def test_the_c_step_is_within_quantization_rounding_of_the_float_layer(cell, nonlinearity):
    layer, x, state = layer_and_inputs(cell, nonlinearity, rows=1)
    output, _ = int8_step.NativeStep(layer, cell, nonlinearity)(x, state)
    with torch.no_grad():
        want, _ = layer(x[:, None], state)
    assert (output - want[:, 0]).abs().max() < 0.03


@pytest.mark.parametrize("portable", [False, True], ids=["auto", "portable"])
def test_the_largest_products_do_not_saturate_the_kernels_16_bit_pairs(portable):
    # Every weight at the top of its 8 bits (255 stored) against x at +63 and h at -63: each
    # pair of products sums to +-32,130, just inside what 16 bits hold.
    layer = nn.RNN(64, 32, nonlinearity="relu", batch_first=True).eval()
    with torch.no_grad():
        for weight in (layer.weight_ih_l0, layer.weight_hh_l0):
            weight.fill_(0.01)
        layer.bias_ih_l0.fill_(0.0)
        layer.bias_hh_l0.fill_(1.0)
    x, h = torch.ones(1, 64), -torch.ones(1, 1, 32)
    output, _ = int8_step.NativeStep(layer, "rnn", "relu", portable=portable)(x, h)
    want, _ = reference_step(layer, "rnn", x, h)
    assert torch.allclose(output, want, atol=1e-5)
    assert torch.allclose(output, torch.full((1, 32), 64 * 0.01 - 32 * 0.01 + 1.0), atol=1e-5)


def test_a_state_of_the_wrong_shape_is_refused_before_the_c_code_reads_it():
    layer, x, state = layer_and_inputs("gru", "tanh")
    step = int8_step.NativeStep(layer, "gru")
    with pytest.raises(ValueError, match="expected"):
        step(x, state[:, :2])
    with pytest.raises(ValueError, match="expected"):
        step(x[:, :10], state)


@pytest.mark.parametrize("portable", [False, True], ids=["auto", "portable"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_whole_c_step_equals_embedding_layers_and_output_layer_one_by_one(cell, portable):
    torch.manual_seed(0)
    embedding, head = nn.Embedding(30, 20), nn.Linear(37, 45)  # 37: not a multiple of 8
    layer, _, state = layer_and_inputs(cell, "tanh")
    stack = int8_step.NativeStep(layer, cell, portable=portable)
    network = int8_step.NativeNetwork(stack, embedding, head)
    tokens = torch.tensor([3, 29, 0])
    logits, new_state = network(tokens, state)
    with torch.no_grad():
        top, want_state = stack(embedding(tokens), state)
        want = head(top)
    assert logits.shape == (3, 45)
    assert torch.allclose(logits, want, atol=1e-5)
    for mine, theirs in zip(*(s if cell == "lstm" else (s,) for s in (new_state, want_state))):
        assert torch.equal(mine, theirs)


def test_a_token_outside_the_embedding_is_refused_before_the_c_code_reads_it():
    layer, _, state = layer_and_inputs("gru", "tanh")
    network = int8_step.NativeNetwork(
        int8_step.NativeStep(layer, "gru"), nn.Embedding(30, 20), nn.Linear(37, 45)
    )
    with pytest.raises(ValueError, match="token 30 is not in the embedding's 30"):
        network(torch.tensor([1, 30, 2]), state)
    with pytest.raises(ValueError, match="expected"):
        network(torch.tensor([1, 2]), state)
    with pytest.raises(ValueError, match="expected"):
        network(torch.tensor([[1], [2], [3]]), state)


def test_an_int8_model_takes_its_whole_step_in_c_where_its_output_layer_is_float32():
    torch.manual_seed(0)
    model = build_model(ModelConfig(40, hidden_size=48, embed_size=16, num_layers=2)).eval()
    assert isinstance(quantize(model).token_step, int8_step.NativeNetwork)
    assert quantize(model, min_weights=0).token_step is None  # an int8 output layer
    assert quantize(model, native=False).token_step is None
    labelled = build_model(ModelConfig(40, hidden_size=48, num_labels=3, end_token=True)).eval()
    assert quantize(labelled).token_step is None


@pytest.mark.parametrize("min_weights", [0, None], ids=["int8-head", "whole-step-in-c"])
def test_an_int8_model_steps_in_c_and_its_steps_follow_its_sequences(min_weights):
    torch.manual_seed(0)
    model = build_model(ModelConfig(40, hidden_size=48, embed_size=16, num_layers=2)).eval()
    int8 = quantize(model) if min_weights is None else quantize(model, min_weights=min_weights)
    assert isinstance(int8.rnn.one_step(2), int8_step.NativeStep)
    tokens = torch.randint(0, 40, (2, 25), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        read = int8(tokens)[0].log_softmax(-1)  # the whole sequences, PyTorch's int8 layer
        state, stepped = None, []
        for t in range(tokens.shape[1]):
            scores, state = int8.step(tokens[:, t], state)
            stepped.append(scores.log_softmax(-1))
    # Two quantizations of the same model (x and h apart in both): hundredths at most.
    assert (torch.stack(stepped, dim=1) - read).abs().max() < 0.1


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_more_rows_than_the_c_step_takes_go_through_pytorchs_operators(cell):
    torch.manual_seed(0)
    config = ModelConfig(40, cell=cell, hidden_size=48, embed_size=16, num_layers=2)
    model = build_model(config).eval()
    in_c, by_torch = quantize(model), quantize(model, native=False)
    many = torch.arange(int8_step.MAX_ROWS + 1)
    with torch.inference_mode():
        assert torch.equal(in_c.step(many)[0], by_torch.step(many)[0])
        few = many[: int8_step.MAX_ROWS]
        assert torch.equal(in_c.step(few)[0], in_c.token_step(few, in_c.begin_state(len(few)))[0])
        assert not torch.equal(in_c.step(few)[0], by_torch.step(few)[0])


@pytest.mark.parametrize(
    "options",
    [{"tie_weights": True, "embed_size": 48}, {"one_hot": True}],
    ids=["tied-weights", "one-hot"],
)
def test_tied_and_one_hot_models_step_in_c_as_their_modules_do(options):
    torch.manual_seed(0)
    model = build_model(ModelConfig(40, hidden_size=48, num_layers=2, **options)).eval()
    int8 = quantize(model)
    assert (int8.token_step is not None) == (not options.get("one_hot"))
    modules = quantize(model)
    modules.token_step = None  # the layers in C, the embedding and output layer as modules
    tokens = torch.tensor([0, 39, 7])
    with torch.inference_mode():
        scores, _ = int8.step(tokens)
        want, _ = modules.step(tokens)
    assert torch.allclose(scores, want, atol=1e-5)
