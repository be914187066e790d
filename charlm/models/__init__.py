"""Recurrent language models."""

from dataclasses import replace

import torch

from .cells import CELLS, IMPLS, CellSpec, cell_registry, with_reference
from .classifier import (
    ENCODER_FIELDS,
    RNNClassifier,
    classifier_log_posterior,
    copy_language_model,
    is_classifier,
    lengths_of,
)
from .heads import DEFAULT_CUTOFFS, SOFTMAXES, AdaptiveHead
from .padded import last_states, run_padded
from .rnnlm import (
    LABEL_INPUTS,
    NONLINEARITIES,
    POOLINGS,
    RNNLM,
    TASKS,
    ModelConfig,
    State,
    detach_state,
    num_parameters,
)
from .scratch import ScratchGRU, ScratchLSTM, ScratchRecurrent, ScratchRNN


def build_model(config: ModelConfig) -> RNNLM | RNNClassifier:
    """The network a config describes, freshly initialised: a language model, or with task
    "classify" a classifier on the same kind of encoder."""
    return RNNClassifier(config) if config.task == "classify" else RNNLM(config)


def convert(model: RNNLM, impl: str) -> RNNLM:
    """The same network with its recurrent layers computed by `impl` ("torch" or "scratch").

    Both implementations name and shape their parameters alike (`rnn.weight_ih_l0`, ...), so
    the state dict carries over unchanged; the copy keeps the device, dtype and train/eval
    mode of `model`. Returns `model` itself when it already uses `impl`.
    """
    config = replace(model.config, impl=impl)  # validates impl
    if config == model.config:
        return model
    reference = model.reference
    # The fresh weights are overwritten at once: keep the caller's random stream untouched.
    with torch.random.fork_rng(devices=[]):
        converted = RNNLM(config)
    converted.load_state_dict(model.state_dict())
    return converted.to(device=reference.device, dtype=reference.dtype).train(model.training)


__all__ = [
    "CELLS",
    "DEFAULT_CUTOFFS",
    "IMPLS",
    "LABEL_INPUTS",
    "NONLINEARITIES",
    "POOLINGS",
    "RNNLM",
    "TASKS",
    "RNNClassifier",
    "SOFTMAXES",
    "AdaptiveHead",
    "CellSpec",
    "ModelConfig",
    "ScratchGRU",
    "ScratchLSTM",
    "ScratchRNN",
    "ScratchRecurrent",
    "State",
    "build_model",
    "cell_registry",
    "classifier_log_posterior",
    "convert",
    "ENCODER_FIELDS",
    "copy_language_model",
    "is_classifier",
    "last_states",
    "lengths_of",
    "run_padded",
    "detach_state",
    "num_parameters",
    "with_reference",
]
