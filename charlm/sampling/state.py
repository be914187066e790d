"""Picking rows (samples, beams) out of a recurrent state of any cell type."""

from __future__ import annotations

import torch

from charlm.models import State


def select_rows(state: State, rows: torch.Tensor) -> State:
    """The state of the given batch rows, in that order (repeats allowed).

    Every tensor of a state holds the batch on dimension 1, as torch's RNN, GRU and LSTM
    states do: (num_layers, batch, hidden). An LSTM's (hidden, cell) pair is handled alike.
    """
    if isinstance(state, torch.Tensor):
        return state.index_select(1, rows)
    return tuple(select_rows(part, rows) for part in state)
