"""Hand-written backpropagation through time equals autograd; the clipping rule equals torch's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.models.bptt import clip_grad_norm, model_bptt, rnn_lm_bptt

VOCAB, EMBED, HIDDEN, BATCH, SEQ = 11, 5, 7, 3, 9


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ), generator=generator)
    targets = torch.randint(0, VOCAB, (BATCH, SEQ), generator=generator)
    return tokens, targets


def _model(num_layers: int, one_hot: bool, impl: str = "torch"):
    torch.manual_seed(num_layers)
    config = ModelConfig(
        vocab_size=VOCAB,
        cell="rnn",
        impl=impl,
        one_hot=one_hot,
        embed_size=EMBED,
        hidden_size=HIDDEN,
        num_layers=num_layers,
        dropout=0.0,
    )
    return build_model(config).double()


def _autograd(model, tokens, targets, state):
    start = None if state is None else state.clone().requires_grad_(True)
    logits, final = model(tokens, start)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    model.zero_grad()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return loss, grads, None if start is None else start.grad, final


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("one_hot", [False, True], ids=["embedding", "one-hot"])
@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_hand_bptt_equals_autograd_in_float64(num_layers, one_hot, carried, impl):
    model = _model(num_layers, one_hot, impl)
    tokens, targets = _batch()
    state = torch.randn(num_layers, BATCH, HIDDEN, dtype=torch.float64) if carried else None

    loss, grads, state_grad, final = _autograd(model, tokens, targets, state)
    by_hand = model_bptt(model, tokens, targets, state)

    torch.testing.assert_close(by_hand.loss, loss.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(by_hand.state, final.detach(), atol=1e-6, rtol=0)
    assert by_hand.grads.keys() == grads.keys()  # every parameter, nothing else
    for name, grad in grads.items():
        torch.testing.assert_close(by_hand.grads[name], grad, atol=1e-6, rtol=0, msg=name)
    if carried:
        torch.testing.assert_close(by_hand.state_grad, state_grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_hand_bptt_handles_both_nonlinearities(nonlinearity):
    torch.manual_seed(0)
    embedding = nn.Embedding(VOCAB, EMBED, dtype=torch.float64)
    rnn = nn.RNN(
        EMBED,
        HIDDEN,
        num_layers=2,
        nonlinearity=nonlinearity,
        batch_first=True,
        dtype=torch.float64,
    )
    head = nn.Linear(HIDDEN, VOCAB, dtype=torch.float64)
    modules = {"embedding": embedding, "rnn": rnn, "head": head}
    tokens, targets = _batch(1)

    outputs, _ = rnn(embedding(tokens))
    loss = F.cross_entropy(head(outputs).flatten(0, 1), targets.flatten())
    loss.backward()
    params = {
        f"{m}.{n}": p.detach() for m, mod in modules.items() for n, p in mod.named_parameters()
    }
    grads = {f"{m}.{n}": p.grad for m, mod in modules.items() for n, p in mod.named_parameters()}

    by_hand = rnn_lm_bptt(params, tokens, targets, nonlinearity=nonlinearity)
    torch.testing.assert_close(by_hand.loss, loss.detach(), atol=1e-6, rtol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(by_hand.grads[name], grad, atol=1e-6, rtol=0, msg=name)


def test_hand_bptt_refuses_gated_cells_and_dropout():
    gru = build_model(ModelConfig(vocab_size=VOCAB, cell="gru", hidden_size=4))
    with pytest.raises(ConfigError, match="vanilla RNN"):
        model_bptt(gru, *_batch())
    dropped = build_model(ModelConfig(vocab_size=VOCAB, cell="rnn", hidden_size=4, dropout=0.5))
    with pytest.raises(ConfigError, match="dropout"):
        model_bptt(dropped, *_batch())


def _gradients(scale: float, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (7,), (3, 7)]
    return [
        scale * torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes
    ]


@pytest.mark.parametrize("scale", [1e-3, 0.3, 10.0, 1e4], ids=["tiny", "small", "large", "huge"])
def test_clipping_rule_matches_clip_grad_norm_(scale):
    theta = 1.0
    grads = _gradients(scale)
    clipped, norm = clip_grad_norm(grads, theta)

    parameters = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(parameters, grads, strict=True):
        p.grad = g.clone()
    torch_norm = nn.utils.clip_grad_norm_(parameters, theta)

    assert norm == pytest.approx(float(torch_norm), rel=1e-12)
    for mine, p in zip(clipped, parameters, strict=True):
        # torch divides by ‖g‖ + 1e-6, the rule by ‖g‖: equal to within 1e-6 relative.
        torch.testing.assert_close(mine, p.grad, rtol=2e-6, atol=1e-12)
    new_norm = torch.sqrt(sum((g**2).sum() for g in clipped)).item()
    if norm > theta:
        assert new_norm == pytest.approx(theta)  # the step is capped at θ ...
        cosine = sum((a * b).sum() for a, b in zip(clipped, grads, strict=True)) / (new_norm * norm)
        assert float(cosine) == pytest.approx(1.0)  # ... and keeps its direction
    else:
        assert all(torch.equal(a, b) for a, b in zip(clipped, grads, strict=True))  # left alone


def test_a_whole_training_step_by_hand_equals_autograd_and_torch_clipping():
    """BPTT by hand, clip by hand, SGD by hand == autograd + clip_grad_norm_ + torch.optim.SGD."""
    by_hand, reference = _model(2, False), _model(2, False)
    tokens, targets = _batch(2)
    lr, theta = 0.5, 0.05  # a small θ so that clipping really happens

    result = model_bptt(by_hand, tokens, targets)
    names = list(result.grads)
    clipped, norm = clip_grad_norm((result.grads[n] for n in names), theta)
    assert norm > theta
    with torch.no_grad():
        parameters = dict(by_hand.named_parameters())
        for name, grad in zip(names, clipped, strict=True):
            parameters[name] -= lr * grad

    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    logits, _ = reference(tokens)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    nn.utils.clip_grad_norm_(reference.parameters(), theta)
    optimizer.step()

    for name, p in reference.named_parameters():
        torch.testing.assert_close(parameters[name], p, atol=1e-6, rtol=0, msg=name)
