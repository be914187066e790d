"""RNN, GRU and LSTM layers written straight from the textbook equations.

Each cell is a short function whose lines are the equations of one time step; a layer runs
the cell along the sequence, and a stack feeds each layer's outputs to the next. The modules
are drop-in replacements for `nn.RNN`, `nn.GRU` and `nn.LSTM`: same constructor arguments,
same parameter names and shapes (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`,
...), same initialisation, same inputs and outputs. So a state dict moves between the two
implementations unchanged, and with the same seed both start from the same weights.

Notation. The textbook writes a product as Xₜ W_xh with W_xh of shape (inputs, hidden);
PyTorch stores the transpose, `weight_ih` of shape (hidden, inputs), so Xₜ W_xh is
`x @ weight_ih.T`. The weights of all gates are stacked in one matrix, in PyTorch's order
(GRU: r, z, n; LSTM: i, f, g, o): one product computes every gate's Xₜ W_x· at once and
`chunk` splits it, which is the same arithmetic as one product per gate, done faster.
Both biases are kept (b_ih and b_hh), as PyTorch does; the textbook's b_h is their sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

Tensor = torch.Tensor
Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]  # W_ih, W_hh, b_ih, b_hh

NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}


def affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x W + b in the textbook's notation (PyTorch stores W transposed)."""
    out = x @ weight.T
    return out if bias is None else out + bias


def rnn_cell(x: Tensor, h: Tensor, weights: Weights, phi: Callable[[Tensor], Tensor]) -> Tensor:
    """One step of a vanilla RNN."""
    w_ih, w_hh, b_ih, b_hh = weights
    return phi(affine(x, w_ih, b_ih) + affine(h, w_hh, b_hh))  # Hₜ = φ(Xₜ W_xh + Hₜ₋₁ W_hh + b_h)


def gru_cell(x: Tensor, h: Tensor, weights: Weights) -> Tensor:
    """One step of a GRU, in PyTorch's form: the reset gate scales Hₜ₋₁ W_hh + b_hn."""
    w_ih, w_hh, b_ih, b_hh = weights
    x_r, x_z, x_n = affine(x, w_ih, b_ih).chunk(3, dim=-1)  # Xₜ W_xr + b_ir, Xₜ W_xz + b_iz, ...
    h_r, h_z, h_n = affine(h, w_hh, b_hh).chunk(3, dim=-1)  # Hₜ₋₁ W_hr + b_hr, ...
    r = torch.sigmoid(x_r + h_r)  # Rₜ = σ(Xₜ W_xr + Hₜ₋₁ W_hr + b_r)
    z = torch.sigmoid(x_z + h_z)  # Zₜ = σ(Xₜ W_xz + Hₜ₋₁ W_hz + b_z)
    h_tilde = torch.tanh(x_n + r * h_n)  # H̃ₜ = tanh(Xₜ W_xh + b_ih + Rₜ ⊙ (Hₜ₋₁ W_hh + b_hh))
    return z * h + (1 - z) * h_tilde  # Hₜ = Zₜ ⊙ Hₜ₋₁ + (1 − Zₜ) ⊙ H̃ₜ


def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], weights: Weights) -> tuple[Tensor, Tensor]:
    """One step of an LSTM; the state is the pair (Hₜ, Cₜ)."""
    h, c = state
    w_ih, w_hh, b_ih, b_hh = weights
    x_i, x_f, x_g, x_o = affine(x, w_ih, b_ih).chunk(4, dim=-1)
    h_i, h_f, h_g, h_o = affine(h, w_hh, b_hh).chunk(4, dim=-1)
    i = torch.sigmoid(x_i + h_i)  # Iₜ = σ(Xₜ W_xi + Hₜ₋₁ W_hi + b_i)
    f = torch.sigmoid(x_f + h_f)  # Fₜ = σ(Xₜ W_xf + Hₜ₋₁ W_hf + b_f)
    o = torch.sigmoid(x_o + h_o)  # Oₜ = σ(Xₜ W_xo + Hₜ₋₁ W_ho + b_o)
    c_tilde = torch.tanh(x_g + h_g)  # C̃ₜ = tanh(Xₜ W_xc + Hₜ₋₁ W_hc + b_c)
    c = f * c + i * c_tilde  # Cₜ = Fₜ ⊙ Cₜ₋₁ + Iₜ ⊙ C̃ₜ
    h = o * torch.tanh(c)  # Hₜ = Oₜ ⊙ tanh(Cₜ)
    return h, c


class ScratchRecurrent(nn.Module):
    """A stack of recurrent layers; subclasses say how many gates and what one step does.

    Internally the state of one layer is a tuple: (H,) for RNN and GRU, (H, C) for LSTM.
    A new cell is a subclass that sets `gates` (and `state_size` if its state has more than
    H) and defines `step`; charlm/models/cells.py registers it.
    """

    gates = 1  # blocks of `hidden_size` rows stacked in each weight matrix
    state_size = 1  # tensors in the state of one layer

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if bidirectional:
            raise ValueError("the scratch layers are unidirectional; use --impl torch")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        factory = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        # Registered in PyTorch's order (layer by layer: W_ih, W_hh, b_ih, b_hh), so that
        # reset_parameters draws the same random numbers into the same tensors.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size
            shapes = {"weight_ih": (rows, layer_input), "weight_hh": (rows, hidden_size)}
            if bias:
                shapes |= {"bias_ih": (rows,), "bias_hh": (rows,)}
            for name, shape in shapes.items():
                self.register_parameter(
                    f"{name}_l{layer}", nn.Parameter(torch.empty(shape, **factory))
                )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H), in registration order."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def layer_weights(self, layer: int) -> Weights:
        """(W_ih, W_hh, b_ih, b_hh) of one layer; the biases are None without bias."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(getattr(self, f"{name}_l{layer}", None) for name in names)

    def step(self, x: Tensor, state: tuple[Tensor, ...], weights: Weights) -> tuple[Tensor, ...]:
        """One time step: the layer's state after reading x, from its state before."""
        raise NotImplementedError

    def forward(self, input: Tensor, hx=None):
        """(output, h_n), or (output, (h_n, c_n)) for the LSTM, exactly as nn.RNN/GRU/LSTM."""
        unbatched = input.dim() == 2
        if unbatched:  # (seq, features): a batch of one
            input = input.unsqueeze(1)
            hx = None if hx is None else _map_state(hx, lambda s: s.unsqueeze(1))
        elif self.batch_first:
            input = input.transpose(0, 1)
        x = input  # (seq, batch, features): iterating over x walks through time
        states = self._split_state(hx, x)  # per layer: (H,) or (H, C), each (batch, hidden)
        finals = []
        for layer in range(self.num_layers):
            weights = self.layer_weights(layer)
            state = states[layer]
            outputs = []
            for x_t in x:  # (batch, features)
                state = self.step(x_t, state, weights)
                outputs.append(state[0])
            x = torch.stack(outputs)  # (seq, batch, hidden): the input of the next layer
            finals.append(state)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)  # between layers, as nn.LSTM
        output = x if unbatched or not self.batch_first else x.transpose(0, 1)
        final = self._join_state(finals)
        if unbatched:
            output = output.squeeze(1)
            final = _map_state(final, lambda s: s.squeeze(1))
        return output, final

    def _split_state(self, hx, x: Tensor) -> list[tuple[Tensor, ...]]:
        if hx is None:
            zeros = x.new_zeros(self.num_layers, x.shape[1], self.hidden_size)
            hx = zeros if self.state_size == 1 else (zeros, zeros)
        parts = (hx,) if self.state_size == 1 else tuple(hx)
        expected = (self.num_layers, x.shape[1], self.hidden_size)
        for part in parts:
            if tuple(part.shape) != expected:
                raise RuntimeError(
                    f"Expected hidden size {expected}, got {list(part.shape)}"
                )  # nn.RNN's error, word for word
        return [tuple(part[layer] for part in parts) for layer in range(self.num_layers)]

    def _join_state(self, finals: list[tuple[Tensor, ...]]):
        # One (layers, batch, hidden) tensor per part of the state: h_n, or h_n and c_n.
        stacked = tuple(torch.stack(part) for part in zip(*finals, strict=True))
        return stacked[0] if self.state_size == 1 else stacked

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if not self.bias:
            text += ", bias=False"
        return text


def _map_state(state, fn):
    return fn(state) if isinstance(state, Tensor) else tuple(fn(s) for s in state)


class ScratchRNN(ScratchRecurrent):
    """`nn.RNN` from the equations: Hₜ = φ(Xₜ W_xh + Hₜ₋₁ W_hh + b_h), φ = tanh or ReLU."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; use tanh or relu")
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
        )

    def step(self, x, state, weights):
        return (rnn_cell(x, state[0], weights, NONLINEARITIES[self.nonlinearity]),)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class ScratchGRU(ScratchRecurrent):
    """`nn.GRU` from the equations (PyTorch's form of the candidate state)."""

    gates = 3

    def step(self, x, state, weights):
        return (gru_cell(x, state[0], weights),)


class ScratchLSTM(ScratchRecurrent):
    """`nn.LSTM` from the equations; the state is (h, c)."""

    gates = 4
    state_size = 2

    def step(self, x, state, weights):
        return lstm_cell(x, state, weights)
