"""The recurrent cells charlm can build, each with its PyTorch reference or none.

One `CellSpec` per cell names its scratch layer (charlm/models/scratch.py) and the PyTorch
layer that computes the same function, when there is one. Everything that depends on the
cell reads it from here: the `--model` choices, which `--impl` values a cell allows, the shape
of its state, and the tests, which compare a cell with its reference only where it has one
and check every cell's gradients against finite differences. Adding a cell is one scratch
class and one entry in `CELLS`.

The registry is an immutable mapping; code that wants more cells (a test, an experiment)
builds its own with `cell_registry(*CELLS.values(), CellSpec(...))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from charlm.errors import ConfigError
from charlm.models.scratch import ScratchGRU, ScratchLSTM, ScratchRecurrent, ScratchRNN

# Who computes the recurrent layers: PyTorch's fused kernels ("torch", a cell's reference),
# or the equations written out ("scratch"). Same parameters, same numbers, different speed.
IMPLS = ("torch", "scratch")


@dataclass(frozen=True)
class CellSpec:
    """One recurrent cell: its name in configs and `--model`, and its two implementations.

    `reference` is PyTorch's own layer for the same equations (same parameter names, shapes
    and initialisation), or None when PyTorch has no such layer; such a cell trains with
    `impl="scratch"` only, and its tests check its gradients against finite differences
    instead of against a reference.
    """

    name: str
    scratch: type[ScratchRecurrent]
    reference: type[nn.Module] | None
    nonlinearity: bool = False  # takes nn.RNN's `nonlinearity` argument (tanh or relu)

    def __post_init__(self) -> None:
        if not (isinstance(self.scratch, type) and issubclass(self.scratch, ScratchRecurrent)):
            raise ConfigError(f"cell {self.name!r}: scratch must be a ScratchRecurrent subclass")
        if self.reference is not None and not _is_pytorch_layer(self.reference):
            # A scratch class (or any charlm class) as its own reference would make the
            # equivalence tests compare a cell with itself and pass whatever it computes.
            raise ConfigError(
                f"cell {self.name!r}: reference must be a PyTorch layer (torch.nn), got "
                f"{self.reference!r}; use None when PyTorch has no such cell"
            )

    @property
    def gates(self) -> int:
        """Blocks of `hidden_size` rows stacked in each weight matrix (RNN 1, GRU 3, LSTM 4)."""
        return self.scratch.gates

    @property
    def state_size(self) -> int:
        """Tensors in the state of one layer: 1 (H), or 2 for the LSTM (H, C)."""
        return self.scratch.state_size

    def layer_class(self, impl: str) -> type[nn.Module]:
        """The layer class that computes this cell with `impl` ("torch" or "scratch")."""
        if impl not in IMPLS:
            raise ConfigError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
        if impl == "scratch":
            return self.scratch
        if self.reference is None:
            raise ConfigError(
                f"--model {self.name} has no PyTorch implementation; use --impl scratch"
            )
        return self.reference


def _is_pytorch_layer(cls: object) -> bool:
    return (
        isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and not issubclass(cls, ScratchRecurrent)
        and cls.__module__.split(".")[0] == "torch"
    )


def cell_registry(*specs: CellSpec) -> Mapping[str, CellSpec]:
    """An immutable name → spec mapping, in the order given; names must be unique."""
    registry: dict[str, CellSpec] = {}
    for spec in specs:
        if spec.name in registry:
            raise ConfigError(f"two cells are named {spec.name!r}")
        registry[spec.name] = spec
    return MappingProxyType(registry)


def with_reference(cells: Mapping[str, CellSpec]) -> tuple[CellSpec, ...]:
    """The cells that PyTorch also implements: the only ones a scratch-vs-torch test can run."""
    return tuple(spec for spec in cells.values() if spec.reference is not None)


CELLS: Mapping[str, CellSpec] = cell_registry(
    CellSpec("rnn", ScratchRNN, nn.RNN, nonlinearity=True),
    CellSpec("gru", ScratchGRU, nn.GRU),
    CellSpec("lstm", ScratchLSTM, nn.LSTM),
)
