"""Recurrent language models."""

from .rnnlm import CELLS, NONLINEARITIES, RNNLM, ModelConfig, State, detach_state, num_parameters


def build_model(config: ModelConfig) -> RNNLM:
    """The network a config describes, freshly initialised."""
    return RNNLM(config)


__all__ = [
    "CELLS",
    "NONLINEARITIES",
    "RNNLM",
    "ModelConfig",
    "State",
    "build_model",
    "detach_state",
    "num_parameters",
]
