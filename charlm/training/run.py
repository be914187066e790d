"""Train a model on books end to end: the Python twin of `charlm train`.

text → tokenizer → ids → batches → model → training → checkpoint
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from charlm.checkpoint import (
    BEST_NAME,
    CONFIG_NAME,
    GENERATIVE_NAME,
    Checkpoint,
    TrainingState,
    files,
    load_checkpoint,
    load_training_state,
    prune_checkpoint,
    read_config,
    save_checkpoint,
    update_config,
)
from charlm.corpus import input_name
from charlm.corpus.encodings import canonical_encoding
from charlm.data import DataOptions, ExampleIds
from charlm.device import (
    is_out_of_memory,
    mixed_precision,
    out_of_memory_message,
    resolve_device,
    set_threads,
)
from charlm.errors import (
    CheckpointError,
    ConfigError,
    DeviceMemoryError,
    MissingTokenizerError,
    StoppedError,
    Terminated,
    TokenizerError,
    TrainingError,
)
from charlm.limits import MAX_VOCAB_SIZE
from charlm.metrics import perplexity
from charlm.models import ENCODER_FIELDS, RNNLM, ModelConfig, num_parameters
from charlm.models.vocabulary import shared_tokens
from charlm.options import SAME, example_defaults, flag_name, option_fields
from charlm.tokenizers import Tokenizer, get_tokenizer_class
from charlm.training import distributed, unused
from charlm.training.allocator import keep_freed_memory
from charlm.training.config import format_duration
from charlm.training.inputs import RunInputs, prepare_inputs
from charlm.training.kept import KeptLM, held_prior, lm_to_keep
from charlm.training.loop import (
    Reporter,
    SilentReporter,
    TrainConfig,
    TrainResult,
    train,
)
from charlm.training.metrics_log import METRICS_LOG_NAME, MetricsLog
from charlm.training.ngram_mix import attach_fitted_ngram
from charlm.training.pretrain import (
    classifier_training,
    pretrain_encoder,
    pretrain_epochs,
)
from charlm.training.progress import RichReporter
from charlm.training.resume import resumed_inputs
from charlm.training.runlock import claim_directory
from charlm.training.signals import StopFlag

DEFAULT_CHECKPOINT_ROOT = Path("checkpoints")
# The keys of a checkpoint's data section that say what its model started from.
STARTED_FROM = ("init_from", "init_backward_from", "pretrained")


@dataclass
class TrainedModel:
    """Where a run saved its model and what it achieved."""

    checkpoint: Path
    result: TrainResult
    num_parameters: int
    best: Path | None = None  # the best-validation checkpoint, when one was saved
    rank: int = 0  # this process's rank under torchrun; only rank 0 saved anything
    test_perplexity: float | None = None
    labels: list[str] = field(default_factory=list)  # what a labelled model generates by
    task: str = "lm"  # or "classify": a classifier, which cannot generate
    trained: bool = True  # False: a resumed run had nothing left to train and saved nothing


def train_book(
    book: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    out: str | os.PathLike | None = None,
    tokenizer: str | None = None,
    tokenizer_options: dict[str, Any] | None = None,
    model: ModelConfig | dict[str, Any] | None = None,
    training: TrainConfig | dict[str, Any] | None = None,
    data: DataOptions | dict[str, Any] | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    resume: str | os.PathLike | None = None,
    init_from: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    threads: int | None = None,
    stop: StopFlag | None = None,
    overwrite: bool = False,
) -> TrainedModel:
    """Train a model on `book` and save it to `out` (default `checkpoints/<book name>`).

    `book` is a file, a directory of .txt files, a glob, a catalogue name (downloaded when
    needed) or a list of these. `tokenizer` names a tokenizer (see `charlm tokenizers`) and
    `tokenizer_options` are its training options, e.g. {"vocab_size": 4000}; with no tokenizer
    named, a classifier of examples reads words when they are sentences and characters when
    they are names (`charlm.data.prepare_examples.tokenizer_for`), and anything else reads
    characters. `model` holds ModelConfig settings (cell, embed_size, hidden_size,
    num_layers, dropout, ...): a dict, whose missing settings take the defaults for the data
    (for short examples, for a classifier of them, and for a new classifier that reads words:
    `option(..., examples=, classify=, words=)` in ModelConfig), or a ModelConfig, taken
    whole but for vocab_size, end_token and num_labels, which the data sets. `data` says how
    the books are read and split (validation and test text). `training` and `data` may be
    dicts of their fields too; a dict of training settings, like the model's, leaves the
    rest at the defaults for the data (a TrainConfig is taken whole).

    `resume` continues the run saved in that checkpoint directory exactly where it stopped
    (same books, model and settings; `training` may change its stopping rules,
    RESUME_OVERRIDES, as a dict of them or a TrainConfig; `out` is that directory);
    `init_from` starts a new run from another checkpoint's weights and tokenizer. A
    classifier (`model={"task": "classify"}`) started from a language model takes its
    embedding and recurrent layers and trains by the ULMFiT recipe (discriminative rates,
    gradual unfreezing); a second `init_from`, a backward language model (trained with
    `DataOptions(reverse=True)`), starts the backward direction of a bidirectional one. A new
    classifier without `init_from` first trains such models of its own training examples
    for `TrainConfig.pretrain_epochs` (by default for a small alphabet; see pretrain.py).
    Under `torchrun` each process trains its share of every batch and rank 0 saves.

    `reporter` hears the run's messages, step reports and evaluations (see
    `charlm.training.Reporter`); by default it is the live display of `charlm train` when
    stderr is a terminal, and nothing otherwise. `SilentReporter()` turns it off.

    The run holds a lock on its checkpoint directory (see runlock.py): a second run into the
    same directory is refused while this one lives, and a directory that already holds a
    model is only reused with `resume` or `overwrite=True` (replace it).
    """
    chosen = _model_settings(model)
    if resume is not None and (chosen or tokenizer is not None or tokenizer_options):
        raise ConfigError(
            "a resumed run keeps its model and tokenizer: leave out model, tokenizer and "
            "tokenizer_options (init_from starts a new run from its weights)"
        )
    data = _settings(data, DataOptions, "data") or DataOptions()
    task = chosen.get("task", "lm")
    if resume is not None and training is not None:
        training = resumed_training(resume, _changes(training, resume))
    elif isinstance(training, dict) and data.example_unit is not None:
        # A dict names the settings it changes; the rest are the defaults for examples (of
        # this task), as when no training settings are given, and as `charlm train` takes them.
        training = {**example_defaults(TrainConfig, task), **training}
    training = _settings(training, TrainConfig, "training")
    init_from, init_backward = _init_sources(init_from)
    # A tokenizer named beside init_from makes the run's own vocabulary (models/vocabulary.py).
    own_vocabulary = init_from is not None and (tokenizer is not None or bool(tokenizer_options))
    model = with_example_defaults(chosen, data)
    if data.example_unit is not None and training is None and resume is None:
        training = TrainConfig(**example_defaults(TrainConfig, task))
    tokenizer = _named_tokenizer(tokenizer, tokenizer_options, model, data, init_from)
    check_settings(model, data, tokenizer, tokenizer_options, resume=resume, init_from=init_from)
    if resume is None:
        (training or TrainConfig()).check_start(task, init_from)
        unused.check_before_reading(chosen, data, training or TrainConfig(), task, init_from)
        if training is not None and training.ngram and not data.splits().has_val():
            raise ConfigError(
                "--ngram fits the mixture of the network and the n-gram model on the "
                "validation text: keep a validation split (--val-fraction above 0)"
            )
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ConfigError("a resumed run continues in its own directory: leave out --out")
    context = distributed.from_environment()
    target = _output_directory(book, out, resume)
    claim = _claimed(target, context, resume=resume is not None, overwrite=overwrite)
    display = _default_display(reporter) if context.is_main else _quiet()
    set_threads(threads)
    with (
        claim,
        _out_of_memory_advice(target),
        display as reporter,
        distributed.process_group(context, resolve_device(device)) as resolved,
    ):
        base = load_checkpoint(resume or init_from) if (resume or init_from) else None
        backward = load_checkpoint(init_backward) if init_backward else None
        _check_directions(base if init_from else None, backward, classifier=task == "classify")
        state = load_training_state(resume) if resume is not None else None
        say = reporter.message
        if resume is not None:
            task = base.model.config.task  # the saved run's: a resumed run gives no model
            book, data = resumed_inputs(base, book, data, say)
            training = training or TrainConfig.from_dict(base.config.get("training", {}))
        if not book:
            raise ConfigError("no BOOK given: name the text to train on")
        training = training or TrainConfig()
        if training.ngram and (task != "lm" or data.example_unit is not None):
            raise ConfigError(
                "--ngram mixes an n-gram model into a language model of continuous text; "
                "leave it out with --examples, --labels or --task classify"
            )
        mixed_precision(training.precision, resolved)  # fail before the books are read
        # Encoding a book and each CPU step reuse big buffers: keep their pages
        # (training/allocator.py).
        keep_freed_memory()
        # A resumed run looks for the token cache entry its first part made.
        cached_as = _saved_cache_spec(base) if resume is not None else None
        inputs = prepare_inputs(
            book, data, base, tokenizer, tokenizer_options, training, say,
            cached_as=cached_as, task=task, own_vocabulary=own_vocabulary,
        )  # fmt: skip
        if resume is not None:
            _check_same_inputs(base, inputs.prepared.info)
        for line in inputs.prepared.report():
            say(line)
        if task == "classify" and len(inputs.labels or ()) < 2:
            # Said now, before pretraining spends the run's time on a classifier that cannot be.
            found = ", ".join(inputs.labels.names) if inputs.labels else "none"
            raise ConfigError(
                f"a classifier needs examples of at least two labels (--labels); found {found}"
            )
        # A new classifier of words, from scratch or from a word LM (whose shape it keeps),
        # regularises as one: from a WikiText-2 LM at one rate, these and the characters'
        # concat pooling with less dropout gave MR's folds 0-2 the same 76.3%.
        if task == "classify" and resume is None and inputs.reads_words:
            model = with_example_defaults(chosen, data, words=True)
            say(_word_defaults_line(chosen, shaped_by_lm=base is not None))
        # A new classifier from scratch first learns to read its examples (pretrain.py).
        new_classifier = task == "classify" and base is None
        vocab_size = inputs.tokenizer.vocab_size
        pretraining = pretrain_epochs(training, vocab_size) if new_classifier else 0

        out = target or DEFAULT_CHECKPOINT_ROOT / _slug(input_name(book))
        data_section = {**inputs.prepared.info, "options": asdict(data)}
        # Where the model started stays recorded through every resumed part of the run.
        resumed_data = base.config.get("data", {}) if resume else {}
        data_section |= {k: v for k, v in resumed_data.items() if k in STARTED_FROM}
        if init_from is not None:
            data_section["init_from"] = str(init_from)
        if init_backward is not None:
            data_section["init_backward_from"] = str(init_backward)
        # A classifier started from a language model (now, or in the run being resumed).
        fine_tune = task == "classify" and bool(
            pretraining
            or (init_from and base is not None and base.model.config.task == "lm")
            or resumed_data.get("init_from")
            or resumed_data.get("pretrained")
        )
        if resume is None:
            unused.check_once_read(
                chosen, training, task, pretraining=pretraining, fine_tune=fine_tune
            )
        if fine_tune and training.lr_decay_per_layer is None:
            # Decided once, by the tokenizer's vocabulary as pretraining is, and recorded.
            decay = training.decay_per_layer(vocab_size)
            training = replace(training, lr_decay_per_layer=decay)
        with torch.random.fork_rng(devices=[resolved] if resolved.type == "cuda" else []):
            # Seed the weights and dropout masks from the run's seed without touching the
            # caller's global random state (a resumed run restores the saved state instead).
            torch.manual_seed(training.seed + context.rank)
            pretrained = None
            if pretraining:
                pretrained = pretrain_encoder(
                    inputs, model, training, pretraining, device=resolved, reporter=reporter,
                    stop=stop, dist=context,
                )  # fmt: skip
                training = classifier_training(training, pretrained)
                data_section["pretrained"] = pretrained.summary
                left = f", {format_duration(training.max_time)} left" if training.max_time else ""
                say(f"the classifier starts from them and fine-tunes (ULMFiT){left}")
                net = inputs.classifier_from(model, pretrained.forward, pretrained.backward)
            else:
                net = inputs.build_model(model, base, backward)
                if inputs.own_vocabulary:
                    say(_carried_over(base, inputs.tokenizer))
                elif init_from and resume is None:
                    _warn_if_unknown(inputs, base, say)
            # A classifier keeps the labelled LM its pretraining made, or the one of the
            # classifier it goes on from (resumed, or --init-from on the same tokens).
            record = {"data": {k: v for k, v in data_section.items() if k != "pretrained"}}
            kept_lm = lm_to_keep(
                _carried_lm(base), pretrained, inputs.labels,
                {**record, **inputs.sections()}, training,
            )  # fmt: skip
            saver = metrics = None
            if context.is_main:
                # A new run leaves an old run's files (--overwrite) as they are until its own
                # first checkpoint is saved: a run that fails before then changes nothing.
                metrics = MetricsLog(
                    out / METRICS_LOG_NAME, resume_step=state and state.step, held=state is None
                )
                saver = RunSaver(
                    out, inputs.tokenizer, training, data_section,
                    _sections(inputs, task, training, kept_lm=kept_lm is not None),
                    kept_lm=kept_lm, metrics=metrics,
                )  # fmt: skip
            train_data, val_data, test_data = inputs.splits
            if saver is not None and state is not None:
                restored = saver.restore_best(net, state, base.config.get("results", {}))
                if restored is not None:
                    say(restored)
            try:
                result = train(
                    net, train_data, val_data, training, device=resolved,
                    reporter=reporter,
                    checkpointer=saver, metrics=metrics, resume=state, stop=stop,
                    val_characters=inputs.val_characters, dist=context, fine_tune=fine_tune,
                )  # fmt: skip
            except TrainingError as exc:
                raise TrainingError(f"{exc}. {_what_was_kept(saver, out, state)}") from exc
            finally:
                if saver is not None:
                    saver.finish()
        test_perplexity = None
        trained = state is None or result.steps > state.step
        # A resumed run with nothing left to train still adds what a stop after its first
        # part's last save kept that part from adding: the test score, the n-gram model.
        saved = read_config(out) if context.is_main and _saved(out) else None
        needs_test = (
            saved is not None
            and test_data is not None
            and (trained or not {"test_perplexity", "test_accuracy"} & set(saved))
        )
        needs_ngram = saved is not None and training.ngram and (trained or not saved.get("ngram"))
        with _finishing(out, result.steps):
            if needs_test:
                test_loss = inputs.test_loss(net, training, resolved, kept_lm)
                say(inputs.test_report(test_loss, net, kept_lm=kept_lm is not None))
                if task == "classify":  # a classifier's test loss is the share it gets wrong
                    update_config(out, test_accuracy=1 - test_loss)
                else:
                    test_perplexity = perplexity(test_loss)
                    update_config(out, test_perplexity=test_perplexity)
            if needs_ngram:
                written = [path for path in (out, out / BEST_NAME) if _saved(path)]
                test = None if test_data is None else (test_data, inputs.prepared.test_characters)
                attach_fitted_ngram(
                    written, train_data, training.ngram, resolved, say,
                    validation=(val_data, inputs.val_characters), test=test,
                )  # fmt: skip
        trained = trained or needs_test or needs_ngram
    best = out / BEST_NAME
    return TrainedModel(
        out,
        result,
        num_parameters(net),
        best if (best / CONFIG_NAME).is_file() else None,
        context.rank,
        test_perplexity,
        inputs.labels.names if inputs.labels is not None else [],
        task,
        trained,
    )


def _sections(
    inputs: RunInputs, task: str, training: TrainConfig, *, kept_lm: bool
) -> dict[str, Any]:
    """The checkpoint sections beside the model: the labels, and for a classifier the prior
    its scores hold (uniform when its loss weighed every label alike), which classify moves
    to the prior asked for by Bayes' rule, and the folder of the labelled LM it classifies
    with, if it kept one."""
    sections = inputs.sections()
    if task == "classify":
        sections["classifier"] = {"prior": held_prior(training)}
        if kept_lm:
            sections["classifier"]["generative"] = GENERATIVE_NAME
    return sections


def _carried_lm(base: Checkpoint | None) -> Checkpoint | None:
    """The labelled LM of the classifier `base` that this run goes on training (its labels
    are this data's: checked when the model was built), or None. (A classifier never moves
    to a vocabulary of its own: check_settings refuses it.)"""
    if base is None or base.generative is None:
        return None
    return base.generative


# What a resumed run may change: how long it goes on and how often it reports. Everything
# else (the model, the data, the optimisation) is the saved run's.
RESUME_OVERRIDES = ("epochs", "max_steps", "max_time", "patience", "eval_every", "log_every")


def resumed_training(directory: str | os.PathLike, changes: dict[str, Any]) -> TrainConfig:
    """The saved run's TrainConfig with the `changes` a resumed run may make.

    Raises ConfigError naming the settings that a resumed run cannot change.
    """
    refused = sorted(set(changes) - set(RESUME_OVERRIDES))
    if refused:
        names = ", ".join("--" + name.replace("_", "-") for name in refused)
        allowed = ", ".join("--" + name.replace("_", "-") for name in RESUME_OVERRIDES)
        raise ConfigError(
            f"a resumed run keeps its settings, so {names} cannot change; only {allowed} can"
        )
    return TrainConfig.from_dict({**read_config(directory).get("training", {}), **changes})


def _changes(training: TrainConfig | dict[str, Any], directory: str | os.PathLike) -> dict:
    """What `training` asks a resumed run to change: a dict's settings as given (each checked
    as a TrainConfig checks it), a TrainConfig's where they differ from the saved run's."""
    if isinstance(training, dict):
        _settings(training, TrainConfig, "training")
        return training
    given = _settings(training, TrainConfig, "training").to_dict()
    # As the saved run resumes: a setting newer than its checkpoint takes its default.
    saved = TrainConfig.from_dict(read_config(directory).get("training", {})).to_dict()
    return {k: v for k, v in given.items() if saved[k] != v}


def check_settings(
    model: dict[str, Any],
    data: DataOptions,
    tokenizer: str | None,
    tokenizer_options: dict[str, Any] | None,
    *,
    resume: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
) -> None:
    """Raise ConfigError or TokenizerError for settings that are wrong before any book is read.

    The vocabulary is not known yet: the model settings are checked with the largest
    vocabulary allowed (the checks that depend on it come once the books are encoded).
    """
    if resume is not None and init_from:
        raise ConfigError("use --resume (continue a run) or --init-from (a new run), not both")
    if model.get("task") == "classify" and (data.example_unit is None or data.labels is None):
        raise ConfigError(
            "--task classify trains on labelled examples: give --labels (and --examples)"
        )
    pooling = model.get("pooling", DEFAULT_POOLING)
    if model.get("task", "lm") == "lm" and pooling != DEFAULT_POOLING:
        raise ConfigError("--pooling is for --task classify: a language model reads every state")
    if model.get("task") == "classify" and data.reverse:
        raise ConfigError(
            "--reverse trains a backward language model; a classifier reads its examples "
            "forwards (--bidirectional adds a backward direction)"
        )
    first, _ = _init_sources(init_from)
    as_lm = model.get("task", "lm") != "classify"
    own_tokens = tokenizer is not None or bool(tokenizer_options)
    if first is not None and (as_lm or own_tokens) and _is_classifier(first):
        if as_lm:  # trained on as an LM, it would go on classifying under an LM's name
            raise ConfigError(f"{first} is a classifier: train on from it with --task classify")
        raise ConfigError(
            f"{first} is a classifier, whose layers cannot move to another vocabulary: train on "
            "from it with its own tokenizer (no --tokenizer), or start from a language model"
        )
    ModelConfig(vocab_size=MAX_VOCAB_SIZE, **model)
    data.splits()
    if data.example_unit is None:
        for flag, path in (("--val", data.val_file), ("--test", data.test_file)):
            if path is not None and Path(path).is_dir():
                raise ConfigError(
                    f"{flag} {path} is a directory; give a text file (a directory of examples "
                    "needs --labels or --examples)"
                )
    if data.encoding is not None:
        canonical_encoding(data.encoding)
    tokenizer = _named_tokenizer(tokenizer, tokenizer_options, model, data, first)
    if resume is None and tokenizer is not None:
        _check_tokenizer(tokenizer, tokenizer_options or {})


def _is_classifier(directory: str | os.PathLike) -> bool:
    return read_config(directory).get("model", {}).get("task") == "classify"


def _named_tokenizer(
    tokenizer: str | None,
    options: dict[str, Any] | None,
    model: dict[str, Any],
    data: DataOptions,
    init_from: str | os.PathLike | None = None,
) -> str | None:
    """`tokenizer`, or the default for this data where none is named: the kind of
    `init_from`'s tokenizer, trained anew with `options`; None (chosen from the examples once
    they are read) for a classifier of examples; else characters."""
    if tokenizer is not None:
        return tokenizer
    if init_from is not None and options:
        return read_config(init_from).get("tokenizer", {}).get("name") or "char"
    chosen_from_examples = model.get("task") == "classify" and data.example_unit is not None
    return None if chosen_from_examples and not options else "char"


def _check_tokenizer(name: str, options: dict[str, Any]) -> None:
    """Raise TokenizerError unless `name` is installed and takes `options`."""
    try:
        cls = get_tokenizer_class(name)
    except MissingTokenizerError:
        raise
    except TokenizerError:
        return  # installed but broken: not a settings error; the run reports it
    cls.check_options(options)


DEFAULT_POOLING = next(f.default for f in dataclasses.fields(ModelConfig) if f.name == "pooling")
# A share of <unk> among the training tokens past which a run from another model's tokenizer
# is told: that vocabulary cannot read this data.
UNKNOWN_WARNING = 0.5


def _warn_if_unknown(inputs: RunInputs, base: Checkpoint, say: Callable[[str], None]) -> None:
    """Say so when most of the training text is <unk> to the tokenizer `init_from` gave."""
    unk = inputs.tokenizer.unk_id
    train = inputs.splits[0]
    ids = train.ids if isinstance(train, ExampleIds) else np.asarray(train)
    share = float(np.mean(ids == unk)) if unk is not None and len(ids) else 0.0
    if share > UNKNOWN_WARNING:
        say(
            f"warning: {share:.0%} of the training tokens are <unk> to {base.path}'s "
            "tokenizer; give --tokenizer for a vocabulary of this data's own"
        )


def _carried_over(base: Checkpoint, tokenizer: Tokenizer) -> str:
    found, _ = shared_tokens(base.tokenizer, tokenizer)
    return (
        f"a vocabulary of its own: {len(found):,} of its {tokenizer.vocab_size:,} tokens keep "
        f"their rows from {base.path}, the other {tokenizer.vocab_size - len(found):,} start "
        "at the mean row"
    )


def _init_sources(init_from: Any) -> tuple[Any, Any]:
    """(forward, backward) checkpoints from one path or a list of one or two."""
    if init_from is None or isinstance(init_from, (str, os.PathLike)):
        return init_from, None
    paths = list(init_from)
    if not 1 <= len(paths) <= 2:
        raise ConfigError("--init-from takes one checkpoint, or two: a forward and a backward LM")
    return paths[0], paths[1] if len(paths) == 2 else None


def _check_directions(
    forward: Checkpoint | None, backward: Checkpoint | None, classifier: bool = False
) -> None:
    """A backward LM must have been trained reversed, and the forward one not (a language
    model alone may go on from a backward one; a classifier reads its examples forwards)."""
    for checkpoint, want in ((forward, False), (backward, True)):
        if checkpoint is None or checkpoint.model.config.task != "lm":
            continue
        reverse = bool(checkpoint.config.get("data", {}).get("options", {}).get("reverse"))
        if reverse != want and (want or backward is not None or classifier):
            which = "second" if want else "first"
            raise ConfigError(
                f"the {which} --init-from ({checkpoint.path}) must be a "
                f"{'backward' if want else 'forward'} language model (charlm train"
                f"{' --reverse' if want else ''})"
            )


def with_example_defaults(
    model: dict[str, Any], data: DataOptions, words: bool = False
) -> dict[str, Any]:
    """The model settings the caller chose, completed where the data is short examples with
    their own defaults: those of a classifier of them (`task` "classify"), and with `words`
    those of a classifier that reads words (see `option(..., examples=, classify=, words=)`)."""
    if data.example_unit is None:
        return model
    return {**example_defaults(ModelConfig, model.get("task", "lm"), words), **model}


def _word_defaults_line(chosen: dict[str, Any], shaped_by_lm: bool = False) -> str:
    """What the run says when a classifier of words takes that classifier's own defaults
    (not the shape's, when a language model gives the shape)."""
    skipped = set(chosen) | (set(ENCODER_FIELDS) if shaped_by_lm else set())
    shown = [
        flag_name(f, spec) if spec.words is True else f"{flag_name(f, spec)} {spec.words}"
        for f, spec in option_fields(ModelConfig)
        if spec.words != SAME and f.name not in skipped
    ]
    return f"a classifier of words, by default: {' '.join(shown) or 'every such option given'}"


# ModelConfig fields the books decide: the tokenizer's vocabulary, and for examples their end
# token and labels.
FROM_THE_DATA = ("vocab_size", "end_token", "num_labels")


def _model_settings(model: ModelConfig | dict[str, Any] | None) -> dict[str, Any]:
    """The caller's model settings as a dict: a ModelConfig whole, less what the data sets."""
    if isinstance(model, ModelConfig):
        model = {k: v for k, v in model.to_dict().items() if k not in FROM_THE_DATA}
    if model is not None and not isinstance(model, dict):
        raise ConfigError(f"model must be a ModelConfig or a dict, got {type(model).__name__}")
    given = [k for k in FROM_THE_DATA if k in (model or {})]
    if given:
        raise ConfigError(f"model settings {', '.join(given)} come from the data; leave them out")
    return dict(model or {})


def _check_same_inputs(base: Checkpoint, info: dict[str, Any]) -> None:
    """Refuse to resume a run on other text than its first part read (books given with
    --resume may be the same files elsewhere, not other files)."""
    saved = (base.config.get("data") or {}).get("inputs_key")
    found = info.get("inputs_key")
    if saved is not None and found is not None and saved != found:
        raise ConfigError(
            f"these books are not the text {base.path} was trained on (their bytes or their "
            "splits differ); resume with the same books, or start a new run from it with "
            "--init-from"
        )


def _settings(value: Any, kind: type, name: str) -> Any:
    """`value` as a `kind` config: itself, None, or made from a dict of its fields."""
    if value is None or isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a {kind.__name__} or a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - {field.name for field in dataclasses.fields(kind)})
    if unknown:
        raise ConfigError(f"{name} has no setting {', '.join(map(repr, unknown))}")
    return kind(**value)


@contextlib.contextmanager
def _claimed(
    target: Path | None, context: distributed.DistContext, *, resume: bool, overwrite: bool
) -> Iterator[None]:
    """Hold the output directory for the run (on the rank that saves): locked against other
    runs, and with no link or special file where the run will write (checked before work)."""
    if target is None or not context.is_main:
        yield
        return
    with claim_directory(target, config_name=CONFIG_NAME, resume=resume, overwrite=overwrite):
        files.check_entries(target, regular=[METRICS_LOG_NAME], directories=[BEST_NAME])
        yield


@contextlib.contextmanager
def _out_of_memory_advice(target: Path | None) -> Iterator[None]:
    """Turn running out of memory into one error line that says what to change."""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        kept = f"; the last checkpoint saved is kept in {target}" if _saved(target) else ""
        advice = (
            "try a smaller --batch-size or --seq-len, or a smaller model (--hidden, "
            f"--layers){kept}"
        )
        raise DeviceMemoryError(out_of_memory_message(exc, advice)) from exc


def _output_directory(book: Any, out: Any, resume: Any) -> Path | None:
    """Where the run will write, or None when the arguments are incomplete (an error later)."""
    if resume is not None:
        return Path(resume)
    if out is not None:
        return Path(out)
    return DEFAULT_CHECKPOINT_ROOT / _slug(input_name(book)) if book else None


def _saved(out: Path | None) -> bool:
    return out is not None and (out / CONFIG_NAME).is_file()


def _default_display(reporter: Reporter | None) -> contextlib.AbstractContextManager[Reporter]:
    """The caller's reporter; else the live display `charlm train` shows when stderr is a
    terminal (or a notebook), and silence when it is not."""
    if reporter is not None:
        return contextlib.nullcontext(reporter)
    console = Console(stderr=True, highlight=False, log_path=False)
    if console.is_terminal or console.is_jupyter:
        return RichReporter(console)
    return _quiet()


def _quiet() -> contextlib.AbstractContextManager[Reporter]:
    return contextlib.nullcontext(SilentReporter())


def _saved_cache_spec(base: Checkpoint) -> dict[str, Any] | None:
    cache = base.config.get("data", {}).get("cache")
    spec = cache.get("tokenizer") if isinstance(cache, dict) else None
    return spec if isinstance(spec, dict) else None


class RunSaver:
    """Saves a run's `last` checkpoint (with training state) to `out` and `best` below it.

    The first `save_last` of a new run (`metrics` held) commits the run to `out`: only then
    do the old run's `best` and metrics log go. The loop saves `last` before `best`.
    """

    def __init__(
        self,
        out: Path,
        tok: Tokenizer,
        training: TrainConfig,
        data: dict,
        extra: dict[str, Any] | None = None,
        kept_lm: KeptLM | None = None,
        metrics: MetricsLog | None = None,
    ) -> None:
        self.out, self.tokenizer, self.training, self.data = out, tok, training, data
        self.best = out / BEST_NAME
        # A classifier's LM goes into each checkpoint before the first config naming it.
        self.kept_lm = kept_lm
        self.extra = extra or {}  # more sections, e.g. the labels of a labelled model
        self.metrics = metrics
        self.committed = metrics is None or not metrics.held
        self.saves = 0  # of `last`

    def save_last(self, model: RNNLM, state: TrainingState, summary: dict[str, Any]) -> None:
        if self.kept_lm is not None:
            self.kept_lm.save_beside(self.out, self.tokenizer)
        save_checkpoint(
            self.out, model, self.tokenizer, training_state=state, **self._sections(summary)
        )
        self.saves += 1
        if not self.committed:
            _remove_stale_parts(self.out, kept_lm=self.kept_lm is not None)
            if self.metrics is not None:
                self.metrics.commit()
            self.committed = True

    def save_best(self, model: RNNLM, summary: dict[str, Any]) -> None:
        best = files.subdirectory(self.best, create=True)
        if self.kept_lm is not None:
            self.kept_lm.save_beside(best, self.tokenizer)
        save_checkpoint(best, model, self.tokenizer, **self._sections(summary))

    def restore_best(
        self, model: RNNLM, state: TrainingState, summary: dict[str, Any]
    ) -> str | None:
        """Put `best` right where a stop (kill -9, a full disk) came between two saves, and
        say what was done (None: nothing was needed). The last checkpoint is saved first:
        - where it names its own step as the best and `best` is missing, half written or
          older, `model` (the last checkpoint's) is saved as `best` again;
        - where it has no best yet (a new run stopped before its first evaluation) and an
          earlier run's `best` is still there (--overwrite), that `best` is removed."""
        try:
            saved = read_config(self.best).get("results", {}).get("steps")
        except CheckpointError:
            saved = None
        meta = state.meta
        if "best_step" in meta and meta["best_step"] is None and saved is not None:
            _remove_stale_parts(self.out, kept_lm=self.kept_lm is not None)
            return f"removed {self.best}, an earlier run's (this run has no best yet)"
        if meta.get("best_step") != state.step or saved == state.step:
            return None
        self.save_best(model, {**summary, "stopped_by": ""})
        return (
            f"{self.best} was behind the last checkpoint (a stop between their saves): saved "
            f"step {state.step:,}, the best, there again"
        )

    def finish(self) -> None:
        """Delete the files of earlier saves that were kept for readers of the last ones."""
        for directory in (self.out, self.best):
            prune_checkpoint(files.subdirectory(directory))

    def _sections(self, summary: dict[str, Any]) -> dict[str, Any]:
        summary = {k: _json_number(v) for k, v in summary.items()}
        return {
            "training": self.training.to_dict(),
            "data": self.data,
            "results": summary,
            "train_perplexity": summary["train_perplexity"],
            "val_perplexity": summary["val_perplexity"],
            **self.extra,
        }


@contextlib.contextmanager
def _finishing(out: Path, step: int) -> Iterator[None]:
    """Ctrl-C or SIGTERM after the last checkpoint was saved, while the test score or the
    n-gram model is added: the model is saved, and a resume adds what is missing."""
    try:
        yield
    except (KeyboardInterrupt, Terminated) as stop:
        raise StoppedError(
            f"stopped after training: {out} is saved (step {step:,}), without its test score or "
            f"n-gram model; charlm train --resume {shlex.quote(str(out))} adds them",
            143 if isinstance(stop, Terminated) else 130,
        ) from None


def _what_was_kept(saver: RunSaver | None, out: Path, resumed: TrainingState | None) -> str:
    """What a run that failed in training leaves in `out`, for its error message."""
    if resumed is not None or (saver is not None and saver.saves):
        return f"The last checkpoint saved before it is kept ({out})"
    if (out / CONFIG_NAME).is_file():  # --overwrite: the earlier run goes at the first save
        return f"Nothing of this run was saved; the earlier run in {out} is as it was"
    return "Nothing was saved"


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _remove_stale_parts(out: Path, *, kept_lm: bool) -> None:
    # A new run in an old run's directory must not leave the old run's `best`, or the
    # language model an old classifier kept, beside it (a new one has replaced it already).
    best = out / BEST_NAME
    parts = [best / GENERATIVE_NAME, best] + ([] if kept_lm else [out / GENERATIVE_NAME])
    for part in parts:
        if (part / CONFIG_NAME).is_file():
            files.remove_tree(part)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "model"
