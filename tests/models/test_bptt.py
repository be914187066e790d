"""Hand-written backpropagation through time equals autograd; the clipping rule equals torch's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.models.bptt import clip_grad_norm, model_bptt, rnn_classifier_bptt, rnn_lm_bptt

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


CLASSES = 4


def _classifier_params(num_layers: int, one_hot: bool, nonlinearity: str) -> dict:
    """The parameters of embedding → nn.RNN → linear to CLASSES, in float64, named as charlm."""
    torch.manual_seed(10 + num_layers)
    rnn = nn.RNN(
        VOCAB if one_hot else EMBED, HIDDEN, num_layers, nonlinearity=nonlinearity
    ).double()
    params = {f"rnn.{name}": p.detach().clone() for name, p in rnn.named_parameters()}
    params["head.weight"] = torch.randn(CLASSES, HIDDEN, dtype=torch.float64)
    params["head.bias"] = torch.randn(CLASSES, dtype=torch.float64)
    if not one_hot:
        params["embedding.weight"] = torch.randn(VOCAB, EMBED, dtype=torch.float64)
    return params


def _classifier_autograd(params, tokens, labels, lengths, nonlinearity):
    """The same network run by nn.RNN over packed sequences, differentiated by autograd."""
    leaves = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    num_layers = sum(1 for name in params if name.startswith("rnn.weight_ih_l"))
    one_hot = "embedding.weight" not in params
    rnn = nn.RNN(
        VOCAB if one_hot else EMBED, HIDDEN, num_layers, nonlinearity=nonlinearity
    ).double()
    x = (
        F.one_hot(tokens, VOCAB).double()
        if one_hot
        else F.embedding(tokens, leaves["embedding.weight"])
    )
    weights = {name[len("rnn.") :]: leaves[name] for name in params if name.startswith("rnn.")}
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    _, h_n = torch.func.functional_call(rnn, weights, (packed,))
    logits = h_n[-1] @ leaves["head.weight"].T + leaves["head.bias"]
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return loss, {name: leaf.grad for name, leaf in leaves.items()}


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers,one_hot", [(1, False), (2, False), (1, True)])
def test_many_to_one_bptt_equals_autograd_on_padded_examples(num_layers, one_hot, nonlinearity):
    params = _classifier_params(num_layers, one_hot, nonlinearity)
    tokens, _ = _batch(5)
    labels = torch.tensor([0, 3, 1])
    lengths = torch.tensor([SEQ, 4, 1])  # padded on the right; one example of one token
    mine = rnn_classifier_bptt(params, tokens, labels, lengths, nonlinearity=nonlinearity)
    loss, grads = _classifier_autograd(params, tokens, labels, lengths, nonlinearity)
    torch.testing.assert_close(mine.loss, loss.detach(), atol=1e-6, rtol=0)
    assert set(mine.grads) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(mine.grads[name], grad, atol=1e-6, rtol=0, msg=name)


def test_padding_never_reaches_the_many_to_one_loss():
    params = _classifier_params(1, False, "tanh")
    tokens, _ = _batch(6)
    labels = torch.tensor([2, 0, 1])
    lengths = torch.tensor([3, 5, 2])
    first = rnn_classifier_bptt(params, tokens, labels, lengths)
    other_padding = tokens.clone()
    for row, length in enumerate(lengths.tolist()):
        other_padding[row, length:] = (other_padding[row, length:] + 1) % VOCAB
    second = rnn_classifier_bptt(params, other_padding, labels, lengths)
    torch.testing.assert_close(first.loss, second.loss, atol=0, rtol=0)
    for name in first.grads:
        torch.testing.assert_close(first.grads[name], second.grads[name], atol=0, rtol=0)


def test_many_to_one_bptt_refuses_lengths_outside_the_batch():
    params = _classifier_params(1, False, "tanh")
    tokens, _ = _batch(7)
    with pytest.raises(ConfigError, match="lengths"):
        rnn_classifier_bptt(params, tokens, torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2]))
