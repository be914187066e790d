"""Picking and joining rows (samples, beams, requests) of a recurrent state of any cell type."""

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


def join_rows(first: State | None, second: State) -> State:
    """The rows of `first` followed by those of `second` (None: no rows yet)."""
    if first is None:
        return second
    if isinstance(first, torch.Tensor):
        return torch.cat([first, second], dim=1)
    return tuple(join_rows(a, b) for a, b in zip(first, second, strict=True))
