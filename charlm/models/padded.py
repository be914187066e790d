"""PyTorch's recurrent layers over right-padded rows, exact in both directions, without packing.

Packed sequences give the same results but train slowly on a CPU: the classifier's step on
64 MR sentences ran 5x slower packed (PyTorch 2.13, one thread; benchmarks/classifier_step.py).
Padded rows are exact for the forward direction, because a row's padding comes after all its
real steps and so changes none of their outputs. The backward direction must start at each
row's last real step, not at its padding: it reads each row reversed within its own length,
where the padding again comes last.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from charlm.models.stepping import WEIGHT_NAMES

# The functions nn.LSTM, nn.GRU and nn.RNN call themselves (cuDNN on a GPU, oneDNN on a CPU),
# here for one layer and one direction at a time, by the module's mode.
RECURRENCES = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}


def run_padded(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The top layer's outputs (batch, seq, directions·hidden) of `rnn` (batch-first) over
    right-padded `inputs` (batch, seq, features) whose first `lengths` positions are real.
    Outputs at padded positions are meaningless: mask them."""
    if not rnn.bidirectional:
        return rnn(inputs)[0]
    reversal = _reversal(lengths.to(inputs.device), inputs.shape[1])
    layer_input = inputs
    for layer in range(rnn.num_layers):
        if layer > 0:
            layer_input = F.dropout(layer_input, rnn.dropout, rnn.training)
        forward = _one_direction(rnn, layer, "", layer_input)
        backward = _one_direction(rnn, layer, "_reverse", _reverse(layer_input, reversal))
        layer_input = torch.cat([forward, _reverse(backward, reversal)], dim=-1)
    return layer_input


def last_states(outputs: torch.Tensor, lengths: torch.Tensor, directions: int) -> torch.Tensor:
    """Each row's final state of every direction, joined (batch, directions·hidden): the
    forward direction's after the row's last real step, the backward one's after it has read
    back to the first step.

    (A bidirectional layer's h_n[-1] would be the backward direction's state alone.)
    """
    hidden = outputs.shape[-1] // directions
    rows = torch.arange(outputs.shape[0], device=outputs.device)
    last = (lengths.to(outputs.device) - 1).clamp(min=0)
    forward = outputs[rows, last, :hidden]
    if directions == 1:
        return forward
    return torch.cat([forward, outputs[:, 0, hidden:]], dim=-1)


def _reversal(lengths: torch.Tensor, seq: int) -> torch.Tensor:
    """The index (batch, seq) that reverses each row within its length and leaves its padding
    in place; it is its own inverse."""
    steps = torch.arange(seq, device=lengths.device)[None, :]
    return torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)


def _reverse(rows: torch.Tensor, reversal: torch.Tensor) -> torch.Tensor:
    return rows.gather(1, reversal[:, :, None].expand(-1, -1, rows.shape[-1]))


def _one_direction(rnn: nn.RNNBase, layer: int, suffix: str, inputs: torch.Tensor) -> torch.Tensor:
    """One layer of one direction of `rnn`, with that direction's own weights, from a zero
    state: outputs (batch, seq, hidden)."""
    names = WEIGHT_NAMES if rnn.bias else WEIGHT_NAMES[:2]
    weights = [getattr(rnn, f"{name}_l{layer}{suffix}") for name in names]
    zeros = inputs.new_zeros(1, inputs.shape[0], rnn.hidden_size)
    state = (zeros, zeros) if rnn.mode == "LSTM" else zeros
    recurrence = RECURRENCES[rnn.mode]
    # (input, state, weights, has biases, layers, dropout, training, bidirectional, batch first)
    return recurrence(inputs, state, weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
