"""One token per row through PyTorch's recurrent layers, without calling the layer.

A sampler feeds the network one token at a time. Called on a sequence of one token,
`nn.LSTM` on a CPU runs oneDNN's RNN primitive, whose fixed cost per call dwarfs one step's
arithmetic at batch 1 (a 2 x 512 LSTM stepped ~8x slower than the same weights through
`torch.lstm_cell`, docs/benchmarks.md). A step needs only the layer's equations: a
matrix-vector product per weight matrix and the gates. Sequences (priming, scoring,
training) keep the fused layer, which is the fast one there.

Each layer steps on its weights laid out for it (`FusedWeights`), stored transposed so that
a step's products read the matrices row by row. LSTM and RNN layers hold one matrix
[W_ih W_hh] and the two biases summed, so that a step is one product of [x, h] with it. In
charlm's sampler (2 x 512 character LSTM, batch 1, AMD EPYC) that gave 1.33-1.75x the tokens
per second of `torch.lstm_cell` on the layer's own weights on one thread and 1.59x on two
(docs/sampling.md); the same product with the matrix in the layer's own layout, 1.3x. A GRU's
candidate gate multiplies h's product alone by the reset gate, so a GRU layer keeps two
products, x W_ih^T and h W_hh^T, on the transposed matrices: its step alone took 539 us
against `torch.gru_cell`'s 974 on one thread, 615 against 784 on two (2 x 512, batch 1).
At 4 rows or more the two ways are close (0.9-1.2x, `python -m benchmarks.stepping`); the
laid-out step is kept there too, as a quiet machine's sampler was faster with it in 8 of 9
cases (4, 16 and 64 samples, one thread or two).
"""

from __future__ import annotations

import torch
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # of each layer, in order


class FusedWeights:
    """The weights of a stacked `nn.LSTM`, `nn.GRU` or `nn.RNN` laid out for single steps,
    rebuilt whenever the layer's own change (moved, loaded, or updated in place by training,
    which PyTorch counts in each tensor's version). A second copy of the recurrent weights:
    17 MB for a 2 x 512 LSTM. Inference only: no dropout between the layers."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.kind = type(layer)
        relu = getattr(layer, "nonlinearity", "tanh") == "relu"
        self._activation = torch.relu if relu else torch.tanh
        self._key: tuple | None = None
        self._weights: list[tuple[torch.Tensor, ...]] = []

    @staticmethod
    def fits(layer: nn.Module) -> bool:
        """Whether this class can step `layer`: PyTorch's own LSTM (without projections),
        GRU or RNN."""
        return type(layer) in (nn.LSTM, nn.GRU, nn.RNN) and not getattr(layer, "proj_size", 0)

    def _current(self) -> list[tuple[torch.Tensor, ...]]:
        # Checked at every step: the layer's own list of its weights (which PyTorch keeps in
        # step with moves and new parameters) costs 5 us a token, walking .parameters() 19.
        key = tuple((t.data_ptr(), t._version) for t in self.layer._flat_weights)
        if key != self._key:
            self._weights = [self._laid_out(index) for index in range(self.layer.num_layers)]
            self._key = key
        return self._weights

    def _laid_out(self, index: int) -> tuple[torch.Tensor, ...]:
        w_ih, w_hh, b_ih, b_hh = (
            getattr(self.layer, f"{name}_l{index}").detach() for name in WEIGHT_NAMES
        )
        if self.kind is nn.GRU:
            return w_ih.t().contiguous(), w_hh.t().contiguous(), b_ih, b_hh
        stacked = torch.cat([w_ih, w_hh], dim=1).t().contiguous()  # (in + hidden, gates)
        return stacked, b_ih + b_hh

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step: x (batch, input) → the top layer's output (batch, hidden) and the
        new state, shaped as the layer's own."""
        lstm = self.kind is nn.LSTM
        hidden, cells = [], []
        for index, weights in enumerate(self._current()):
            h = state[0][index] if lstm else state[index]
            if self.kind is nn.GRU:
                x = _gru_step(x, h, *weights)
            elif lstm:
                x, c = _lstm_step(x, h, state[1][index], *weights)
                cells.append(c)
            else:
                x = self._activation(torch.addmm(weights[1], torch.cat([x, h], dim=1), weights[0]))
            hidden.append(x)
        new_hidden = torch.stack(hidden)
        return x, (new_hidden, torch.stack(cells)) if lstm else new_hidden


def _lstm_step(
    x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, stacked: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    gates = torch.addmm(bias, torch.cat([x, h], dim=1), stacked)
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(
    x: torch.Tensor,
    h: torch.Tensor,
    w_ih_t: torch.Tensor,
    w_hh_t: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> torch.Tensor:
    # As few operators as the equations allow: at small sizes each one's call is the cost.
    from_x = torch.addmm(b_ih, x, w_ih_t)  # (batch, 3 hidden): reset, update, candidate
    from_h = torch.addmm(b_hh, h, w_hh_t)
    size = h.shape[1]
    reset, update = torch.sigmoid(from_x[:, : 2 * size] + from_h[:, : 2 * size]).chunk(2, dim=1)
    candidate = torch.addcmul(from_x[:, 2 * size :], reset, from_h[:, 2 * size :]).tanh_()
    return torch.lerp(candidate, h, update)  # (1 - update)·candidate + update·h
