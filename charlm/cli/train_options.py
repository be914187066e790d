"""The options of `charlm train`, grouped by the part of the pipeline they configure.

Each group is a decorator that adds its options to a command; the *_KEYS maps say which
configuration object each parsed option belongs to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from charlm.cli import Duration
from charlm.device import DEVICE_CHOICES
from charlm.models import CELLS, DEFAULT_CUTOFFS, IMPLS, NONLINEARITIES, SOFTMAXES
from charlm.schedules import OPTIMIZERS, SCHEDULES
from charlm.training import ITERATORS, NONFINITE, PRECISIONS, TrainConfig

_defaults = TrainConfig()


def _apply(options: list) -> Any:
    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


data_options = _apply(
    [
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
            help="Fraction at the end of each book held out for validation (ignored with --val).",
        ),
        click.option(
            "--test-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Fraction at the very end of each book held out for a final test "
            "perplexity (ignored with --test).",
        ),
        click.option(
            "--val",
            "val_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Validation text from this file instead of each book's tail.  [default: none]",
        ),
        click.option(
            "--test",
            "test_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Test text from this file, scored once after training.  [default: none]",
        ),
        click.option(
            "--encoding",
            default=None,
            help="Read the books in this encoding (e.g. cp1252, gb18030) instead of "
            "detecting it.  [default: detect]",
        ),
        click.option(
            "--keep-boilerplate",
            is_flag=True,
            default=False,
            show_default=True,
            help="Keep the Project Gutenberg header and licence instead of removing them.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Where encoded corpora are cached.  [default: $CHARLM_CACHE or ~/.cache/charlm]",
        ),
        click.option(
            "--no-cache",
            is_flag=True,
            default=False,
            show_default=True,
            help="Tokenize in memory; neither read nor write the token cache.",
        ),
    ]
)


def _key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """`--tokenizer-option` values as a dict; the value stays a string for the tokenizer."""
    options = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. vocab_size=4000)")
        options[key.strip()] = value
    return options


def _cutoffs(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """`--cutoffs 2000,10000` as a list of ints."""
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


tokenizer_options = _apply(
    [
        click.option(
            "--tokenizer",
            default="char",
            show_default=True,
            help="How the book is cut into tokens: char, byte, word, bpe, wordpiece, "
            "unigram, hf or a plugin; `charlm tokenizers` lists them.",
        ),
        click.option(
            "--tokenizer-option",
            "tokenizer_options",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_key_values,
            help="A training option of the tokenizer, e.g. vocab_size=4000; repeatable.  "
            "[default: none]",
        ),
    ]
)

model_options = _apply(
    [
        click.option(
            "--model",
            "cell",
            type=click.Choice(list(CELLS)),
            default="lstm",
            show_default=True,
            help="Recurrent cell.",
        ),
        click.option(
            "--impl",
            type=click.Choice(list(IMPLS)),
            default="torch",
            show_default=True,
            help="torch: PyTorch's fast layers; scratch: the same cells written out from "
            "the textbook equations (slower, same numbers).",
        ),
        click.option(
            "--one-hot",
            is_flag=True,
            default=False,
            show_default=True,
            help="Feed one-hot vectors of vocabulary size instead of an embedding "
            "(--embed is then unused).",
        ),
        click.option(
            "--layers",
            type=click.IntRange(min=1),
            default=2,
            show_default=True,
            help="Number of stacked recurrent layers.",
        ),
        click.option(
            "--hidden",
            type=click.IntRange(min=1),
            default=512,
            show_default=True,
            help="Hidden units per layer.",
        ),
        click.option(
            "--embed",
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="Size of the token embedding.",
        ),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
            help="Dropout between stacked layers.",
        ),
        click.option(
            "--embed-dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Dropout on the embedded input tokens.",
        ),
        click.option(
            "--output-dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Dropout on the last layer's output, before the head.",
        ),
        click.option(
            "--tie-weights/--no-tie-weights",
            default=False,
            show_default=True,
            help="Share the embedding matrix with the output layer (needs --embed = --hidden).",
        ),
        click.option(
            "--nonlinearity",
            type=click.Choice(NONLINEARITIES),
            default="tanh",
            show_default=True,
            help="Activation of --model rnn (GRU/LSTM have gates).",
        ),
        click.option(
            "--softmax",
            type=click.Choice(SOFTMAXES),
            default="full",
            show_default=True,
            help="Output layer: full, or adaptive (much faster for word vocabularies of "
            "10k+ tokens; see --cutoffs).",
        ),
        click.option(
            "--cutoffs",
            callback=_cutoffs,
            default=None,
            metavar="N,N,...",
            help="Adaptive softmax: where its clusters of rarer tokens start, e.g. 2000,10000.  "
            f"[default: {','.join(map(str, DEFAULT_CUTOFFS))}, those below the vocabulary size]",
        ),
        click.option(
            "--init-range",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Initialise every weight uniformly in ±this (0.1 in Zaremba et al.).  "
            "[default: PyTorch's initialisation]",
        ),
    ]
)

training_options = _apply(
    [
        click.option(
            "--seq-len",
            type=click.IntRange(min=1),
            default=_defaults.seq_len,
            show_default=True,
            help="Tokens per sequence: how far back gradients flow.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=_defaults.batch_size,
            show_default=True,
            help="Sequences per batch.",
        ),
        click.option(
            "--epochs",
            type=click.IntRange(min=1),
            default=_defaults.epochs,
            show_default=True,
            help="Passes over the training text.",
        ),
        click.option(
            "--lr",
            type=click.FloatRange(min=0, min_open=True),
            default=_defaults.lr,
            show_default=True,
            help="Peak learning rate (try 1e-3..3e-3 for Adam, ~1 for SGD).",
        ),
        click.option(
            "--clip",
            type=click.FloatRange(min=0, min_open=True),
            default=_defaults.clip,
            show_default=True,
            help="Largest allowed gradient norm θ: g ← min(1, θ/‖g‖)·g.",
        ),
        click.option(
            "--iterator",
            type=click.Choice(ITERATORS),
            default=_defaults.iterator,
            show_default=True,
            help="sequential: rows continue across batches and the state is carried; "
            "random: random subsequences, fresh state every batch.",
        ),
        click.option(
            "--max-time",
            type=Duration(),
            default=None,
            help="Stop after this much training time, e.g. 300, 10m, 1h.  [default: none]",
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(min=1),
            default=None,
            help="Stop after this many optimizer steps.  [default: none]",
        ),
        click.option(
            "--seed",
            type=click.IntRange(0, 2**32 - 1),
            default=_defaults.seed,
            show_default=True,
            help="Seed for weights, batch order and dropout.",
        ),
        click.option(
            "--optimizer",
            type=click.Choice(OPTIMIZERS),
            default=_defaults.optimizer,
            show_default=True,
            help="adamw decouples --weight-decay from the gradient.",
        ),
        click.option(
            "--momentum",
            type=click.FloatRange(0, 1, max_open=True),
            default=_defaults.momentum,
            show_default=True,
            help="Momentum of --optimizer sgd.",
        ),
        click.option(
            "--weight-decay",
            type=click.FloatRange(min=0),
            default=_defaults.weight_decay,
            show_default=True,
            help="L2 penalty (adam, sgd) or decoupled decay (adamw).",
        ),
        click.option(
            "--schedule",
            type=click.Choice(SCHEDULES),
            default=_defaults.schedule,
            show_default=True,
            help="Learning rate over the run: constant; cosine decay to --min-lr-ratio; "
            "plateau: multiply by --plateau-factor when validation stalls; step: multiply by "
            "--decay-factor each epoch after --decay-start. With --max-time, cosine and step "
            "follow the clock.",
        ),
        click.option(
            "--warmup",
            type=click.IntRange(min=0),
            default=_defaults.warmup,
            show_default=True,
            help="Steps of linear learning-rate warm-up.",
        ),
        click.option(
            "--min-lr-ratio",
            type=click.FloatRange(0, 1),
            default=_defaults.min_lr_ratio,
            show_default=True,
            help="Where cosine ends, as a fraction of --lr.",
        ),
        click.option(
            "--plateau-factor",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=_defaults.plateau_factor,
            show_default=True,
            help="plateau schedule: multiply the rate by this when validation stalls.",
        ),
        click.option(
            "--plateau-patience",
            type=click.IntRange(min=1),
            default=_defaults.plateau_patience,
            show_default=True,
            help="plateau schedule: evaluations without improvement before reducing.",
        ),
        click.option(
            "--decay-factor",
            type=click.FloatRange(0, 1, min_open=True),
            default=_defaults.decay_factor,
            show_default=True,
            help="step schedule: multiply the rate by this once per epoch after --decay-start.",
        ),
        click.option(
            "--decay-start",
            type=click.IntRange(min=0),
            default=_defaults.decay_start,
            show_default=True,
            help="step schedule: the last epoch at the full rate.",
        ),
        click.option(
            "--patience",
            type=click.IntRange(min=1),
            default=None,
            help="Stop after this many evaluations without a better validation "
            "perplexity.  [default: never]",
        ),
        click.option(
            "--eval-every",
            type=click.IntRange(min=1),
            default=None,
            help="Validate every N steps as well as after each epoch.  [default: per epoch]",
        ),
        click.option(
            "--log-every",
            type=click.IntRange(min=1),
            default=_defaults.log_every,
            show_default=True,
            help="Steps between records in the metrics log.",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default=_defaults.precision,
            show_default=True,
            help="Mixed precision: bf16 (CUDA or CPU) or fp16 (CUDA only, with a loss scaler).",
        ),
        click.option(
            "--nonfinite",
            type=click.Choice(NONFINITE),
            default=_defaults.nonfinite,
            show_default=True,
            help="On a NaN/inf loss: stop with a message, or skip the batch.",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="CPU threads for tensor maths.  [default: PyTorch's choice]",
        ),
        click.option(
            "--resume",
            type=click.Path(path_type=Path),
            default=None,
            help="Continue the run saved in this checkpoint directory exactly where it "
            "stopped (BOOK, model and settings come from it).",
        ),
        click.option(
            "--init-from",
            type=click.Path(path_type=Path),
            default=None,
            help="Start a new run from this checkpoint's weights and tokenizer "
            "(fine-tuning on a new BOOK).",
        ),
    ]
)

run_options = _apply(
    [
        click.option(
            "--device",
            type=click.Choice(DEVICE_CHOICES),
            default="auto",
            show_default=True,
            help="auto uses a CUDA GPU when there is one.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            default=None,
            help="Checkpoint directory.  [default: checkpoints/<book name>]",
        ),
        click.option(
            "--overwrite",
            is_flag=True,
            default=False,
            show_default=True,
            help="Replace the model already in the checkpoint directory (without this, "
            "training into one that holds a model is refused; --resume continues it).",
        ),
    ]
)

MODEL_KEYS = {
    "cell": "cell",
    "impl": "impl",
    "one_hot": "one_hot",
    "layers": "num_layers",
    "hidden": "hidden_size",
    "embed": "embed_size",
    "dropout": "dropout",
    "embed_dropout": "embed_dropout",
    "output_dropout": "output_dropout",
    "tie_weights": "tie_weights",
    "nonlinearity": "nonlinearity",
    "softmax": "softmax",
    "cutoffs": "cutoffs",
    "init_range": "init_range",
}
TRAINING_KEYS = {
    "seq_len",
    "batch_size",
    "epochs",
    "lr",
    "clip",
    "iterator",
    "max_time",
    "max_steps",
    "seed",
    "optimizer",
    "momentum",
    "weight_decay",
    "schedule",
    "warmup",
    "min_lr_ratio",
    "plateau_factor",
    "plateau_patience",
    "patience",
    "eval_every",
    "log_every",
    "precision",
    "nonfinite",
    "decay_factor",
    "decay_start",
}
# What a resumed run may change: how long it goes on and how often it reports.
RESUME_OVERRIDES = {"epochs", "max_steps", "max_time", "patience", "eval_every", "log_every"}
STOP_EXIT_CODES = {"interrupted": 130, "terminated": 143}


DATA_KEYS = {
    "val_fraction",
    "test_fraction",
    "val_file",
    "test_file",
    "encoding",
    "keep_boilerplate",
    "cache_dir",
}
