"""One token per row through PyTorch's recurrent layers, stepped with its cell functions.

A sampler feeds the network one token at a time. Called on a sequence of one token,
`nn.LSTM` on a CPU runs oneDNN's RNN primitive, whose fixed cost per call dwarfs one step's
arithmetic at batch 1 (a 2 x 512 LSTM stepped ~8x slower than the same weights through
`torch.lstm_cell`, docs/benchmarks.md). The cell functions (`torch.lstm_cell`,
`torch.gru_cell`, `torch.rnn_tanh_cell`, `torch.rnn_relu_cell`) compute the same equations
with the layer's own weights: a matrix-vector product per weight matrix and the gates,
nothing else. Sequences (priming, scoring, training) keep the fused layer, which is the
fast one there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
CellFunction = Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # of each layer, in order
_CELL_FUNCTIONS: dict[tuple[type[nn.Module], str], CellFunction] = {
    (nn.LSTM, "tanh"): torch.lstm_cell,
    (nn.GRU, "tanh"): torch.gru_cell,
    (nn.RNN, "tanh"): torch.rnn_tanh_cell,
    (nn.RNN, "relu"): torch.rnn_relu_cell,
}


def cell_function(layer: nn.Module) -> CellFunction | None:
    """PyTorch's one-step function for the cells of `layer`, or None when it has none
    (scratch layers step through their own equations)."""
    nonlinearity = getattr(layer, "nonlinearity", "tanh")
    return _CELL_FUNCTIONS.get((type(layer), nonlinearity))


def step_layers(
    layer: nn.Module, cell: CellFunction, x: torch.Tensor, state: State
) -> tuple[torch.Tensor, State]:
    """One time step of the stacked `layer`: x (batch, input) → the top layer's output
    (batch, hidden) and the new state, shaped as the layer's own: (layers, batch, hidden),
    or a pair of those for the LSTM. Inference only: no dropout between the layers."""
    paired = isinstance(state, tuple)
    hidden, cells = [], []
    for index in range(layer.num_layers):
        w = [getattr(layer, f"{name}_l{index}") for name in WEIGHT_NAMES]
        if paired:
            h, c = cell(x, (state[0][index], state[1][index]), *w)
            cells.append(c)
        else:
            h = cell(x, state[index], *w)
        hidden.append(h)
        x = h  # the next layer's input
    new_hidden = torch.stack(hidden)
    return x, (new_hidden, torch.stack(cells)) if paired else new_hidden
