"""Settings a new run would accept and then ignore: refused instead, naming what is unused.

A user who types `--label-input token` or `--lr-decay-per-layer 2` expects it to change the
run; when this run has nothing the setting applies to, saying so beats a silent no-op. Some
are known before the books are read (from the options alone), the rest once the vocabulary
says whether a classifier pretrains (pretrain.py).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from charlm.data import DataOptions
from charlm.errors import ConfigError
from charlm.models import ModelConfig
from charlm.training.config import TrainConfig

_DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}


def label_flags(chosen: dict[str, Any]) -> list[str]:
    """The label settings among the model settings given, other than their defaults."""
    return [
        flag
        for key, flag in (("label_input", "--label-input"), ("label_size", "--label-size"))
        if chosen.get(key, _DEFAULTS[key]) != _DEFAULTS[key]
    ]


def check_before_reading(
    chosen: dict[str, Any], data: DataOptions, training: TrainConfig, task: str, init_from: Any
) -> None:
    """ConfigError for a setting that nothing in a new run of these options would use."""
    given = label_flags(chosen)
    if given and data.labels is None:
        raise ConfigError(f"{_joined(given)} for a model of labelled examples: give --labels")
    if given and task == "classify" and (init_from or not training.keep_lm):
        why = "--init-from" if init_from else "--no-keep-lm"
        raise ConfigError(
            f"{_joined(given)} for the labelled language model a classifier keeps, and with "
            f"{why} it keeps none: leave {'them' if len(given) > 1 else 'it'} out"
        )
    if "--label-size" in given and chosen.get("label_input") == "token":
        raise ConfigError(
            "--label-size is the size of the label vector of --label-input every-step; "
            "--label-input token reads the label as a token: leave one out"
        )
    if data.example_unit is not None and training.iterator != "sequential":
        raise ConfigError(
            f"--iterator {training.iterator} cuts continuous text; examples are read one at a "
            "time, each from its own start: leave it out with --examples"
        )
    if task == "classify" and not init_from and training.pretrain_epochs == 0:
        _check_classifier_from_scratch(chosen, training, "--pretrain-epochs 0")


def check_once_read(
    chosen: dict[str, Any], training: TrainConfig, task: str, *, pretraining: int, fine_tune: bool
) -> None:
    """ConfigError for a classifier's setting that its vocabulary turned into a no-op: a
    classifier of words does not pretrain by default, so it has no layers from a language
    model to slow down or unfreeze and no labelled language model to keep."""
    if task == "classify" and not fine_tune and not pretraining:
        _check_classifier_from_scratch(
            chosen,
            training,
            "a classifier of words does not pretrain unless --pretrain-epochs says",
        )


def _check_classifier_from_scratch(chosen: dict[str, Any], training: TrainConfig, why: str) -> None:
    """A classifier with neither --init-from nor pretraining: nothing to fine-tune, no LM kept."""
    given = [
        flag
        for flag, unused in (
            ("--lr-decay-per-layer", training.lr_decay_per_layer is not None),
            ("--no-gradual-unfreeze", not training.gradual_unfreeze),
        )
        if unused
    ]
    if given:
        raise ConfigError(
            f"{_joined(given)} for the layers a language model gives a classifier, and this "
            f"one starts from scratch ({why})"
        )
    if label_flags(chosen):
        raise ConfigError(
            f"{_joined(label_flags(chosen))} for the labelled language model a classifier "
            f"keeps from its pretraining, and this one does not pretrain ({why})"
        )


def _joined(flags: list[str]) -> str:
    return f"{' and '.join(flags)} {'are' if len(flags) > 1 else 'is'}"
