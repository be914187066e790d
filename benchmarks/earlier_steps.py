"""The one-token steps charlm took before its layers stepped on laid-out weights, kept so
that the benchmarks can time them beside today's (`RNNLM.step`, charlm/models/stepping.py).

* `LayerCalls`: a model without `step`, so the sampler calls it on a one-token sequence per
  token: the recurrent layer's own call (`nn.LSTM(x, state)`), how charlm sampled before
  issue 22.
* `CellSteps`: a step through PyTorch's cell functions (`torch.lstm_cell`, ...) on the
  layer's own weights, charlm's step after that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from charlm.models.stepping import WEIGHT_NAMES, State

CellFunction = Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
_CELL_FUNCTIONS: dict[tuple[type[nn.Module], str], CellFunction] = {
    (nn.LSTM, "tanh"): torch.lstm_cell,
    (nn.GRU, "tanh"): torch.gru_cell,
    (nn.RNN, "tanh"): torch.rnn_tanh_cell,
    (nn.RNN, "relu"): torch.rnn_relu_cell,
}


def cell_function(layer: nn.Module) -> CellFunction:
    """PyTorch's one-step function for the cells of `layer` (PyTorch's own LSTM, GRU, RNN)."""
    return _CELL_FUNCTIONS[type(layer), getattr(layer, "nonlinearity", "tanh")]


def step_layers(layer: nn.Module, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One time step of the stacked `layer` through its cell function: x (batch, input) →
    the top layer's output (batch, hidden) and the new state, shaped as the layer's own."""
    cell, paired = cell_function(layer), isinstance(state, tuple)
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


class LayerCalls(nn.Module):
    """A model without `step`: the sampler then calls it on a one-token sequence per token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.model(tokens, state)


class CellSteps(LayerCalls):
    """A model whose `step` runs PyTorch's cell functions on the layer's own weights."""

    def step(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        model = self.model
        if state is None:
            state = model.begin_state(tokens.shape[0], tokens.device)
        inputs = model._inputs(tokens.unsqueeze(1), None)[:, 0]  # (batch, input)
        outputs, state = step_layers(model.rnn, inputs, state)
        return model.head(outputs), state
