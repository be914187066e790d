"""Pretraining a classifier's encoder on its own examples: ULMFiT's middle step, in the run.

    training examples ──(with their labels)───► forward LM ─┐
                      ──(read backwards)──────► backward LM ┴─► the classifier's encoder
                                                  forward LM ──► kept: classifies beside it

A classifier of names that starts from language models of the training names reads them
better than one that starts from random weights: on the names split of
docs/benchmarks.md#classifiers, 84.3% / macro-F1 0.570 against 83.1% / 0.573 from scratch,
both bidirectional and trained in 5 minutes (83.8% / 0.559 over five seeds). So a new
classifier of a small alphabet first trains these models for `--pretrain-epochs` (the
forward one, and a backward one when it is bidirectional) and then fine-tunes them with the
ULMFiT recipe, as `--init-from` does with models trained apart. A classifier of a large
vocabulary (words; Chinese characters) does not by default: its language model's output
layer spans the whole vocabulary, and on the Chinese reviews two such models got 110 steps
each in their minute, and left the classifier too little time (56% where it reaches 81%
alone).

The forward model also learns the labels (`--keep-lm`, the default): it is then a labelled
language model, charlm's generative classifier, and the run keeps it in the checkpoint's
`generative` folder, where the classifier classifies with it (charlm/sampling/sampler.py).
The two err differently: on the names, five seeds of the defaults gave 85.2% / macro-F1
0.596 with it, 83.7% / 0.550 without it, and 83.9% / 0.561 before it was kept (5 minutes
each; docs/benchmarks.md#classifiers). Since it classifies, it trains as long as a labelled
LM of its own would: twice the epochs, within a third of `--max-time`. The classifier takes
the first layer's weights on the tokens and leaves those on the label.

Within `--max-time` the backward model (and a forward one that is not kept) gets at most a
fifth of the time, so that the classifier keeps the larger part; `--max-steps` bounds each
of them too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from charlm.data import ExampleIds
from charlm.errors import StoppedError
from charlm.models import ENCODER_FIELDS, RNNLM, ModelConfig, build_model
from charlm.options import example_defaults
from charlm.training.config import (
    SMALL_VOCABULARY,
    Reporter,
    TrainConfig,
    TrainResult,
    format_duration,
)
from charlm.training.distributed import DistContext
from charlm.training.inputs import RunInputs
from charlm.training.loop import train
from charlm.training.signals import STOP_EXIT_CODES, StopFlag

# The epochs of each language model when a classifier of a small alphabet does not say.
DEFAULT_EPOCHS = 10
# The largest share of --max-time one language model may take; a kept one, a third.
TIME_SHARE = 0.2
KEPT_TIME_SHARE = 1 / 3


@dataclass
class PretrainedEncoder:
    """The language models a classifier starts from, and what they took. `kept`: the
    forward one is a labelled LM that the classifier keeps and classifies with."""

    forward: RNNLM
    backward: RNNLM | None
    train_seconds: float
    summary: dict[str, Any]  # for the checkpoint's data section
    kept: bool = False


def pretrain_epochs(training: TrainConfig, vocab_size: int) -> int:
    """Epochs of each language model for a new classifier: as given, else by its vocabulary."""
    if training.pretrain_epochs is not None:
        return training.pretrain_epochs
    return DEFAULT_EPOCHS if vocab_size <= SMALL_VOCABULARY else 0


def pretrain_encoder(
    inputs: RunInputs,
    model: dict[str, Any],
    training: TrainConfig,
    epochs: int,
    *,
    device: torch.device,
    reporter: Reporter,
    stop: StopFlag | None,
    dist: DistContext,
) -> PretrainedEncoder:
    """Train the language models of `inputs`' training examples that start a classifier
    with the `model` settings: forward (of the examples and their labels when
    `training.keep_lm`, to be kept), and backward (without labels) if it is bidirectional.
    Raises StoppedError if a stop (Ctrl-C, SIGTERM) ends one early."""
    kept = training.keep_lm
    directions = ["forward", "backward"] if model.get("bidirectional") else ["forward"]
    networks, summary, seconds = {}, {"epochs": epochs}, 0.0
    for direction in directions:
        labelled = kept and direction == "forward"
        config = language_model_training(training, epochs, kept=labelled)
        # The backward model reads every example reversed, as `charlm train --reverse` does.
        train_ids, val_ids, _ = dataclasses.replace(inputs, reverse=direction == "backward").splits
        of = "training examples and their labels" if labelled else "training examples"
        reporter.message(
            f"pretraining the classifier's encoder: a {direction} language model of the "
            f"{len(train_ids):,} {of}, {_bounds(config)}"
        )
        net = build_model(_lm_config(inputs, model, labelled=labelled))
        if not labelled:
            train_ids, val_ids = _unlabelled(train_ids), _unlabelled(val_ids)
        result = train(
            net, train_ids, val_ids, config, device=device, reporter=reporter, stop=stop,
            dist=dist,
        )  # fmt: skip
        if result.stopped_by in STOP_EXIT_CODES:
            raise StoppedError(
                f"{result.stopped_by} while pretraining the {direction} language model, "
                "before the classifier's first step: nothing was saved",
                STOP_EXIT_CODES[result.stopped_by],
            )
        seconds += result.train_seconds
        networks[direction] = net
        summary[direction] = {**_summary(result), "epochs": config.epochs, "labelled": labelled}
        reporter.message(f"{direction} language model: {_outcome(result)}")
    return PretrainedEncoder(
        networks["forward"], networks.get("backward"), seconds, summary, kept=kept
    )


def classifier_training(training: TrainConfig, pretrained: PretrainedEncoder) -> TrainConfig:
    """The classifier's own TrainConfig: what is left of --max-time after its encoder's."""
    if training.max_time is None:
        return training
    return dataclasses.replace(
        training, max_time=max(training.max_time - pretrained.train_seconds, 1.0)
    )


def language_model_training(
    training: TrainConfig, epochs: int, *, kept: bool = False
) -> TrainConfig:
    """The language models train as any model of short examples does (Adam, no weight
    decay), for `epochs` (a kept one twice as many), within the classifier's bounds (a share
    of its time, at most its steps), with its batches, rate, clipping, precision and seed."""
    lm = TrainConfig(**example_defaults(TrainConfig, "lm"))
    share = KEPT_TIME_SHARE if kept else TIME_SHARE
    max_time = None if training.max_time is None else training.max_time * share
    kept_settings = (
        "batch_size",
        "lr",
        "clip",
        "seq_len",
        "seed",
        "precision",
        "nonfinite",
        "log_every",
    )
    return dataclasses.replace(
        lm,
        epochs=2 * epochs if kept else epochs,
        max_time=max_time,
        max_steps=training.max_steps,
        **{name: getattr(training, name) for name in kept_settings},
    )


def _lm_config(inputs: RunInputs, model: dict[str, Any], *, labelled: bool) -> ModelConfig:
    """A language model of the examples (of their labels too when `labelled`) with the
    classifier's encoder shape."""
    shape = {k: model[k] for k in ENCODER_FIELDS if k in model}
    defaults = example_defaults(ModelConfig, "lm")
    labels = len(inputs.labels) if labelled and inputs.labels is not None else 0
    return ModelConfig(
        inputs.tokenizer.vocab_size + 1, end_token=True, num_labels=labels, **{**defaults, **shape}
    )


def _unlabelled(examples: ExampleIds | None) -> ExampleIds | None:
    return None if examples is None else dataclasses.replace(examples, labels=None)


def _bounds(config: TrainConfig) -> str:
    parts = [f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"]
    if config.max_time is not None:
        parts.append(f"{format_duration(config.max_time)} at most")
    if config.max_steps is not None:
        parts.append(f"{config.max_steps:,} steps at most")
    return ", ".join(parts)


def _summary(result: TrainResult) -> dict[str, Any]:
    return {
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 1),
        "val_perplexity": result.val_perplexity,
    }


def _outcome(result: TrainResult) -> str:
    quality = (
        f"validation perplexity {result.val_perplexity:.3f}"
        if result.val_perplexity is not None
        else f"train perplexity {result.train_perplexity:.3f}"
    )
    return f"{quality} after {result.steps:,} steps ({format_duration(result.train_seconds)})"
