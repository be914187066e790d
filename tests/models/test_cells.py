"""The cell registry: each cell's PyTorch reference is PyTorch's own layer, or none."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from charlm.errors import ConfigError
from charlm.models import (
    CELLS,
    IMPLS,
    CellSpec,
    ModelConfig,
    ScratchGRU,
    ScratchRecurrent,
    build_model,
    cell_registry,
    with_reference,
)

# A cell PyTorch does not have, made from an existing scratch class: registered in a copy.
NO_REFERENCE = CellSpec("plain", ScratchGRU, None)


def test_the_built_in_cells_and_their_references():
    # The names are stored in checkpoints and typed after --model: they must not change.
    assert list(CELLS) == ["rnn", "gru", "lstm"]
    assert [spec.reference for spec in CELLS.values()] == [nn.RNN, nn.GRU, nn.LSTM]
    assert [(spec.gates, spec.state_size) for spec in CELLS.values()] == [(1, 1), (3, 1), (4, 2)]
    assert IMPLS == ("torch", "scratch")


@pytest.mark.parametrize("spec", with_reference(CELLS), ids=lambda spec: spec.name)
def test_no_reference_is_the_scratch_class_itself(spec):
    # A cell compared with itself passes every equivalence test, whatever it computes.
    assert spec.reference is not spec.scratch
    assert not issubclass(spec.reference, ScratchRecurrent)
    assert spec.reference.__module__.startswith("torch.nn.")


@pytest.mark.parametrize("reference", [ScratchGRU, ScratchRecurrent, int])
def test_a_spec_whose_reference_is_not_a_pytorch_layer_is_refused(reference):
    with pytest.raises(ConfigError, match="reference must be a PyTorch layer"):
        CellSpec("gru", ScratchGRU, reference)


def test_a_scratch_class_must_be_a_scratch_layer():
    with pytest.raises(ConfigError, match="ScratchRecurrent subclass"):
        CellSpec("gru", nn.GRU, nn.GRU)


def test_the_registry_is_immutable_and_a_copy_can_add_a_cell():
    with pytest.raises(TypeError):
        CELLS["plain"] = NO_REFERENCE  # type: ignore[index]
    extended = cell_registry(*CELLS.values(), NO_REFERENCE)
    assert list(extended) == ["rnn", "gru", "lstm", "plain"]
    assert "plain" not in CELLS
    assert with_reference(extended) == tuple(CELLS.values())  # no torch comparison for it
    with pytest.raises(ConfigError, match="two cells are named 'gru'"):
        cell_registry(*CELLS.values(), CellSpec("gru", ScratchGRU, None))


def test_a_cell_without_reference_builds_with_scratch_only():
    assert NO_REFERENCE.layer_class("scratch") is ScratchGRU
    with pytest.raises(ConfigError, match="--model plain has no PyTorch implementation"):
        NO_REFERENCE.layer_class("torch")
    with pytest.raises(ConfigError, match="unknown impl"):
        NO_REFERENCE.layer_class("numpy")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CELLS))
def test_the_model_builds_the_registered_layer_and_state(name, impl):
    spec = CELLS[name]
    model = build_model(ModelConfig(vocab_size=7, cell=name, impl=impl, hidden_size=4))
    assert type(model.rnn) is spec.layer_class(impl)
    assert model.rnn.weight_hh_l0.shape == (spec.gates * 4, 4)
    state = model.begin_state(3)
    parts = (state,) if isinstance(state, torch.Tensor) else state
    assert len(parts) == spec.state_size
    _, final = model(torch.zeros(3, 2, dtype=torch.long), state)
    assert type(final) is type(state)  # what begin_state makes is what the layer returns
