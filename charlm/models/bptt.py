"""Backpropagation through time for vanilla-RNN networks, written by hand (no autograd): the
language model (a loss at every step) and the many-to-one classifier (a loss at the last step).

The network is charlm's RNN language model (embedding or one-hot input → stacked vanilla RNN
→ linear head → softmax cross-entropy), with the parameters named as in its state dict.
Forward, for each layer and each step t:

    Aₜ = Xₜ W_xh + b_ih + Hₜ₋₁ W_hh + b_hh        Hₜ = φ(Aₜ)
    Oₜ = Hₜ W_hq + b_q                             L = mean over tokens of −log softmax(Oₜ)[yₜ]

Backward, in the reverse order; dHₜ collects what flows into Hₜ from above (the head or the
next layer) and from the future (step t+1):

    dOₜ  = (softmax(Oₜ) − onehot(yₜ)) / N          dW_hq += dOₜᵀ Hₜ     dHₜ = dOₜ W_hq
    dAₜ  = (dHₜ + dAₜ₊₁ W_hh) ⊙ φ'(Aₜ)             φ'(A) = 1 − Hₜ² (tanh), [Hₜ > 0] (ReLU)
    dW_xh += dAₜᵀ Xₜ     dW_hh += dAₜᵀ Hₜ₋₁     db += Σ dAₜ     dXₜ = dAₜ W_xh (layer below)

The product with W_hh repeated once per step is why gradients vanish or explode over long
sequences; `clip_grad_norm` is the usual remedy for the second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from charlm.errors import ConfigError

Tensor = torch.Tensor


@dataclass
class BPTTResult:
    """The loss, the gradient of every parameter (state-dict names) and of the initial state."""

    loss: Tensor
    grads: dict[str, Tensor]
    state_grad: Tensor  # dL/dH₀, (layers, batch, hidden)
    state: Tensor  # the final hidden state, (layers, batch, hidden)


@torch.no_grad()
def rnn_lm_bptt(
    params: dict[str, Tensor],
    tokens: Tensor,
    targets: Tensor,
    state: Tensor | None = None,
    *,
    nonlinearity: str = "tanh",
) -> BPTTResult:
    """Loss and gradients of a vanilla-RNN language model on one batch, by hand.

    `params` holds `rnn.weight_ih_l{k}`, `rnn.weight_hh_l{k}`, `rnn.bias_ih_l{k}`,
    `rnn.bias_hh_l{k}`, `head.weight`, `head.bias` and, unless the input is one-hot,
    `embedding.weight`. `tokens` and `targets` are (batch, seq) ids; `state` is H₀,
    (layers, batch, hidden), zeros when None. The loss is the mean cross-entropy.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ConfigError(f"unknown nonlinearity {nonlinearity!r}; use tanh or relu")
    num_layers = sum(1 for name in params if name.startswith("rnn.weight_ih_l"))
    head_w, head_b = params["head.weight"], params["head.bias"]
    batch, seq = tokens.shape
    hidden = params["rnn.weight_hh_l0"].shape[0]
    if state is None:
        state = head_w.new_zeros(num_layers, batch, hidden)

    x, inputs, states = _forward(params, tokens, state, num_layers, nonlinearity)
    logits = x @ head_w.T + head_b  # (seq, batch, vocab)
    y = targets.T  # (seq, batch)
    log_probs = torch.log_softmax(logits, dim=-1)
    n = y.numel()
    loss = -log_probs.gather(-1, y.unsqueeze(-1)).sum() / n

    # ---- backward: softmax cross-entropy, head, then each layer from the top down.
    one_hot_y = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    d_logits = (log_probs.exp() - one_hot_y) / n  # dOₜ = (softmax(Oₜ) − onehot(yₜ)) / N
    grads = {
        "head.weight": torch.einsum("tbv,tbh->vh", d_logits, x),  # Σₜ dOₜᵀ Hₜ
        "head.bias": d_logits.sum(dim=(0, 1)),
    }
    d_out = d_logits @ head_w  # dHₜ from the head, (seq, batch, hidden)
    state_grad = _backward(params, tokens, d_out, inputs, states, nonlinearity, grads)
    return BPTTResult(loss, grads, state_grad, torch.stack([h[-1] for h in states]))


@torch.no_grad()
def rnn_classifier_bptt(
    params: dict[str, Tensor],
    tokens: Tensor,
    labels: Tensor,
    lengths: Tensor | None = None,
    *,
    nonlinearity: str = "tanh",
) -> BPTTResult:
    """Loss and gradients of a many-to-one vanilla-RNN classifier on one batch, by hand.

    The textbook's sentiment network: the RNN reads a whole example and only the state after
    its last token is classified, so the loss (mean cross-entropy over the batch) has one term
    per example and the gradient enters the recurrence at that one step:

        O = H_T W_hq + b_q       dO = (softmax(O) − onehot(y)) / B      dH_T = dO W_hq

    and flows back through every earlier step exactly as in `rnn_lm_bptt`. `params` is named
    as there, with `head.weight` of shape (classes, hidden). `tokens` is (batch, seq), padded
    on the right; `lengths` (batch,) says where each example ends (all of seq when None).
    Steps after an example's end never reach its loss, so padding changes nothing.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ConfigError(f"unknown nonlinearity {nonlinearity!r}; use tanh or relu")
    num_layers = sum(1 for name in params if name.startswith("rnn.weight_ih_l"))
    head_w, head_b = params["head.weight"], params["head.bias"]
    batch, seq = tokens.shape
    if lengths is None:
        lengths = torch.full((batch,), seq)
    if bool((lengths < 1).any()) or bool((lengths > seq).any()):
        raise ConfigError(f"lengths must be between 1 and the sequence length {seq}")
    state = head_w.new_zeros(num_layers, batch, params["rnn.weight_hh_l0"].shape[0])

    x, inputs, states = _forward(params, tokens, state, num_layers, nonlinearity)
    rows = torch.arange(batch)
    last = x[lengths - 1, rows]  # H_T of each example, (batch, hidden)
    logits = last @ head_w.T + head_b  # (batch, classes)
    log_probs = torch.log_softmax(logits, dim=-1)
    loss = -log_probs[rows, labels].sum() / batch

    one_hot_y = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    d_logits = (log_probs.exp() - one_hot_y) / batch  # dO
    grads = {"head.weight": d_logits.T @ last, "head.bias": d_logits.sum(dim=0)}
    d_out = torch.zeros_like(x)  # the gradient enters at each example's last step only
    d_out[lengths - 1, rows] = d_logits @ head_w  # dH_T
    state_grad = _backward(params, tokens, d_out, inputs, states, nonlinearity, grads)
    return BPTTResult(loss, grads, state_grad, torch.stack([h[-1] for h in states]))


def _forward(
    params: dict[str, Tensor], tokens: Tensor, state: Tensor, num_layers: int, nonlinearity: str
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The top layer's outputs (seq, batch, hidden), and every layer's inputs and states."""
    if "embedding.weight" in params:
        x = params["embedding.weight"][tokens.T]  # (seq, batch, embed)
    else:
        vocab_size = params["rnn.weight_ih_l0"].shape[1]  # one-hot: inputs = vocabulary
        x = F.one_hot(tokens.T, vocab_size).to(params["rnn.weight_hh_l0"].dtype)
    inputs, states = [], []  # per layer: (seq, batch, in) and (seq + 1, batch, hidden)
    for layer in range(num_layers):
        w_ih, w_hh, b_ih, b_hh = _layer(params, layer)
        hs = [state[layer]]
        for t in range(tokens.shape[1]):
            a = x[t] @ w_ih.T + b_ih + hs[-1] @ w_hh.T + b_hh  # Aₜ
            hs.append(torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a))  # Hₜ = φ(Aₜ)
        inputs.append(x)
        states.append(torch.stack(hs))
        x = states[-1][1:]  # this layer's outputs are the next layer's inputs
    return x, inputs, states


def _backward(
    params: dict[str, Tensor],
    tokens: Tensor,
    d_out: Tensor,
    inputs: list[Tensor],
    states: list[Tensor],
    nonlinearity: str,
    grads: dict[str, Tensor],
) -> Tensor:
    """Backpropagate dL/d(top outputs) through every layer into `grads`; returns dL/dH₀."""
    num_layers = len(states)
    state_grad = torch.empty(num_layers, *states[0].shape[1:], dtype=d_out.dtype)
    for layer in reversed(range(num_layers)):
        w_ih, w_hh, _, _ = _layer(params, layer)
        hs, xs = states[layer], inputs[layer]
        d_a = torch.empty_like(d_out)
        d_next = torch.zeros_like(hs[0])  # dAₜ₊₁ W_hh: nothing flows back from t = seq
        for t in reversed(range(d_out.shape[0])):
            d_h = d_out[t] + d_next  # from above and from the future
            d_a[t] = d_h * _phi_prime(hs[t + 1], nonlinearity)  # dAₜ = dHₜ ⊙ φ'(Aₜ)
            d_next = d_a[t] @ w_hh  # into Hₜ₋₁
        state_grad[layer] = d_next
        grads[f"rnn.weight_ih_l{layer}"] = torch.einsum("tbh,tbi->hi", d_a, xs)  # Σ dAₜᵀ Xₜ
        grads[f"rnn.weight_hh_l{layer}"] = torch.einsum("tbh,tbk->hk", d_a, hs[:-1])  # Σ dAₜᵀHₜ₋₁
        grads[f"rnn.bias_ih_l{layer}"] = d_a.sum(dim=(0, 1))
        grads[f"rnn.bias_hh_l{layer}"] = grads[f"rnn.bias_ih_l{layer}"].clone()
        d_out = d_a @ w_ih  # dXₜ: what flows into the layer below (or the embedding)
    if "embedding.weight" in params:
        # Each token's row received the gradient of every position it was read at.
        d_embed = torch.zeros_like(params["embedding.weight"])
        d_embed.index_add_(0, tokens.T.reshape(-1), d_out.reshape(-1, d_out.shape[-1]))
        grads["embedding.weight"] = d_embed
    return state_grad


def model_bptt(model: torch.nn.Module, tokens: Tensor, targets: Tensor, state=None) -> BPTTResult:
    """`rnn_lm_bptt` on a charlm RNN language model (cell "rnn", no dropout)."""
    config = model.config
    if config.cell != "rnn":
        raise ConfigError(f"hand-written BPTT covers the vanilla RNN only, not {config.cell!r}")
    if config.softmax != "full":
        raise ConfigError("hand-written BPTT covers the full softmax only, not the adaptive one")
    if config.num_layers > 1 and config.dropout > 0 and model.training:
        raise ConfigError("hand-written BPTT has no dropout; set dropout 0 or call model.eval()")
    return rnn_lm_bptt(
        {name: p.detach() for name, p in model.named_parameters()},
        tokens,
        targets,
        state,
        nonlinearity=getattr(model.rnn, "nonlinearity", "tanh"),
    )


def clip_grad_norm(grads: Iterable[Tensor], theta: float) -> tuple[list[Tensor], float]:
    """g ← min(1, θ/‖g‖)·g, with ‖g‖ the norm of all gradients together; also returns ‖g‖.

    The direction of the step is kept; only its length is capped at θ. (PyTorch's
    `clip_grad_norm_` divides by ‖g‖ + 10⁻⁶ to avoid dividing by zero; here a zero gradient
    is simply left alone.)
    """
    grads = list(grads)
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))  # ‖g‖
    scale = min(1.0, theta / norm) if norm > 0 else 1.0  # min(1, θ/‖g‖)
    return [g * scale for g in grads], norm


def _layer(params: dict[str, Tensor], layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(
        params[f"rnn.{name}_l{layer}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )


def _phi_prime(h: Tensor, nonlinearity: str) -> Tensor:
    # Both derivatives can be read off the output: tanh' = 1 − tanh², relu' = [relu(a) > 0].
    return 1 - h * h if nonlinearity == "tanh" else (h > 0).to(h.dtype)
