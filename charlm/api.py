"""Train a model on books end to end: the Python twin of `charlm train`.

text → tokenizer → ids → batches → model → training → checkpoint
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from charlm import distributed
from charlm.checkpoint import (
    BEST_NAME,
    CONFIG_NAME,
    Checkpoint,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    update_config,
)
from charlm.corpus import DEFAULT_CORPUS_DIR, SplitConfig, input_name, resolve_inputs
from charlm.data import min_tokens_for_one_batch
from charlm.device import (
    is_out_of_memory,
    mixed_precision,
    out_of_memory_message,
    resolve_device,
    set_threads,
)
from charlm.errors import (
    ConfigError,
    CorpusError,
    DeviceMemoryError,
    TokenizerError,
    TrainingError,
)
from charlm.metrics import METRICS_LOG_NAME, MetricsLog, perplexity
from charlm.models import RNNLM, ModelConfig, build_model, num_parameters
from charlm.prepare import prepare_data
from charlm.resume import TrainingState
from charlm.runlock import claim_directory
from charlm.signals import StopFlag
from charlm.tokenizers import Tokenizer
from charlm.training import (
    Reporter,
    SilentReporter,
    TrainConfig,
    TrainResult,
    evaluate,
    train,
)

DEFAULT_CHECKPOINT_ROOT = Path("checkpoints")


@dataclass
class DataOptions:
    """How books become training, validation and test ids (see docs/corpora.md)."""

    val_fraction: float = 0.1  # the end of each book, unless val_file is given
    test_fraction: float = 0.0
    val_file: str | None = None
    test_file: str | None = None
    encoding: str | None = None  # None: detect
    keep_boilerplate: bool = False  # keep Project Gutenberg headers and licences
    cache_dir: str | None = None  # None: $CHARLM_CACHE or ~/.cache/charlm
    use_cache: bool = True
    corpus_dir: str = str(DEFAULT_CORPUS_DIR)  # where catalogue books are downloaded

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def splits(self) -> SplitConfig:
        return SplitConfig(
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            val_file=self.val_file,
            test_file=self.test_file,
        )


@dataclass
class TrainedModel:
    """Where a run saved its model and what it achieved."""

    checkpoint: Path
    result: TrainResult
    num_parameters: int
    best: Path | None = None  # the best-validation checkpoint, when one was saved
    rank: int = 0  # this process's rank under torchrun; only rank 0 saved anything
    test_perplexity: float | None = None


def train_book(
    book: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    out: str | os.PathLike | None = None,
    tokenizer: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    training: TrainConfig | None = None,
    data: DataOptions | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    resume: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    threads: int | None = None,
    stop: StopFlag | None = None,
    overwrite: bool = False,
) -> TrainedModel:
    """Train a model on `book` and save it to `out` (default `checkpoints/<book name>`).

    `book` is a file, a directory of .txt files, a glob, a catalogue name (downloaded when
    needed) or a list of these. `tokenizer` names a tokenizer (see `charlm tokenizers`) and
    `tokenizer_options` are its training options, e.g. {"vocab_size": 4000}. `model` holds
    ModelConfig settings (cell, embed_size, hidden_size, num_layers, dropout, ...); `data`
    says how the books are read and split (validation and test text).

    `resume` continues the run saved in that checkpoint directory exactly where it stopped
    (same books, model and settings unless `training` is given; `out` is that directory);
    `init_from` starts a new run from another checkpoint's weights and tokenizer.
    Under `torchrun` each process trains its share of every batch and rank 0 saves.

    The run holds a lock on its checkpoint directory (see charlm/runlock.py): a second run
    into the same directory is refused while this one lives, and a directory that already
    holds a model is only reused with `resume` or `overwrite=True` (replace it).
    """
    target = _output_directory(book, out, resume)
    if target is None or not distributed.from_environment().is_main:
        claim = contextlib.nullcontext()
    else:
        claim = claim_directory(
            target, config_name=CONFIG_NAME, resume=resume is not None, overwrite=overwrite
        )
    with claim:
        try:
            return _train_book(
                book, out=out, tokenizer=tokenizer, tokenizer_options=tokenizer_options,
                model=model, training=training, data=data, device=device, reporter=reporter,
                resume=resume, init_from=init_from, threads=threads, stop=stop,
            )  # fmt: skip
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


def _train_book(
    book: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    out: str | os.PathLike | None = None,
    tokenizer: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    training: TrainConfig | None = None,
    data: DataOptions | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    resume: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    threads: int | None = None,
    stop: StopFlag | None = None,
) -> TrainedModel:
    """The run itself; `train_book` holds the directory around it."""
    if resume is not None and init_from is not None:
        raise ConfigError("use --resume (continue a run) or --init-from (a new run), not both")
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ConfigError("a resumed run continues in its own directory: leave out --out")
    set_threads(threads)
    context = distributed.from_environment()
    resolved = distributed.setup(context, resolve_device(device))
    base = load_checkpoint(resume or init_from) if (resume or init_from) else None
    state = load_training_state(resume) if resume is not None else None
    data = data or DataOptions()
    if resume is not None:
        book, data = _resumed_inputs(base, book, data)
        training = training or TrainConfig.from_dict(base.config.get("training", {}))
        out = resume
    if not book:
        raise ConfigError("no BOOK given: name the text to train on")
    training = training or TrainConfig()
    mixed_precision(training.precision, resolved)  # fail before the books are read
    say = (reporter or SilentReporter()).message if context.is_main else _ignore
    prepared = _prepare(book, data, base, tokenizer, tokenizer_options, say)
    tok, train_ids, val_ids = prepared.tokenizer, prepared.train_ids, prepared.val_ids
    _check_lengths(train_ids, val_ids, prepared.test_ids, training)
    for line in prepared.report():
        say(line)

    out = Path(out) if out is not None else DEFAULT_CHECKPOINT_ROOT / _slug(input_name(book))
    data_section = {**prepared.info, "options": asdict(data)}
    if init_from is not None:
        data_section["init_from"] = str(init_from)
    saver = _RunSaver(out, tok, training, data_section) if context.is_main else None
    metrics = None
    if context.is_main:
        if state is None:
            _remove_stale_best(out)
        metrics = MetricsLog(out / METRICS_LOG_NAME, resume_step=state and state.step)
    with torch.random.fork_rng(devices=[resolved] if resolved.type == "cuda" else []):
        # Seed the weights and dropout masks from the run's seed without touching the
        # caller's global random state (a resumed run restores the saved state instead).
        torch.manual_seed(training.seed + context.rank)
        net = base.model if base else build_model(ModelConfig(tok.vocab_size, **(model or {})))
        try:
            result = train(
                net, train_ids, val_ids, training, device=resolved,
                reporter=reporter if context.is_main else SilentReporter(), checkpointer=saver,
                metrics=metrics, resume=state, stop=stop,
                val_characters=prepared.val_characters, dist=context,
            )  # fmt: skip
        except TrainingError as exc:
            kept = f" ({out})" if (out / CONFIG_NAME).is_file() else ""
            raise TrainingError(f"{exc}{kept}") from exc
        finally:
            distributed.teardown(context)
    test_perplexity = None
    if context.is_main and prepared.test_ids is not None:
        test_perplexity = _test_perplexity(net, prepared.test_ids, training, resolved, say)
        update_config(out, test_perplexity=test_perplexity)
    best = out / BEST_NAME
    return TrainedModel(
        out,
        result,
        num_parameters(net),
        best if (best / CONFIG_NAME).is_file() else None,
        context.rank,
        test_perplexity,
    )


def _ignore(text: str) -> None:
    pass


def _resumed_inputs(base: Checkpoint, book: Any, data: DataOptions) -> tuple[Any, DataOptions]:
    """The books and data options a resumed run was started with."""
    saved = base.config.get("data", {})
    if "options" in saved:
        data = DataOptions.from_dict(saved["options"])
    if not book:
        book = [entry["path"] for entry in saved.get("books", [])]
    return book, data


def _prepare(book, data: DataOptions, base: Checkpoint | None, tokenizer, options, say):
    """Read, split and encode the books (from the token cache when it has them)."""
    try:
        return prepare_data(
            resolve_inputs(book, corpus_dir=data.corpus_dir, message=say),
            tokenizer=base.tokenizer if base else tokenizer,
            tokenizer_options=None if base else options,
            splits=data.splits(),
            encoding=data.encoding,
            keep_boilerplate=data.keep_boilerplate,
            cache_dir=data.cache_dir,
            use_cache=data.use_cache,
        )
    except TokenizerError as exc:
        if base is None:
            raise
        raise TokenizerError(
            f"the book cannot be encoded by the tokenizer of {base.path}, which the model "
            f"comes with: {exc}"
        ) from exc


def _test_perplexity(net, test_ids, training: TrainConfig, device, say) -> float:
    loss = evaluate(
        net, test_ids, batch_size=training.batch_size, seq_len=training.seq_len, device=device
    )
    say(f"test perplexity {perplexity(loss):.3f} on {len(test_ids):,} tokens")
    return perplexity(loss)


class _RunSaver:
    """Saves a run's `last` checkpoint (with training state) to `out` and `best` below it."""

    def __init__(self, out: Path, tok: Tokenizer, training: TrainConfig, data: dict) -> None:
        self.out, self.tokenizer, self.training, self.data = out, tok, training, data

    def save_last(self, model: RNNLM, state: TrainingState, summary: dict[str, Any]) -> None:
        save_checkpoint(
            self.out, model, self.tokenizer, training_state=state, **self._sections(summary)
        )

    def save_best(self, model: RNNLM, summary: dict[str, Any]) -> None:
        save_checkpoint(self.out / BEST_NAME, model, self.tokenizer, **self._sections(summary))

    def _sections(self, summary: dict[str, Any]) -> dict[str, Any]:
        summary = {k: _json_number(v) for k, v in summary.items()}
        return {
            "training": self.training.to_dict(),
            "data": self.data,
            "results": summary,
            "train_perplexity": summary["train_perplexity"],
            "val_perplexity": summary["val_perplexity"],
        }


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _remove_stale_best(out: Path) -> None:
    # A new run in an old run's directory must not leave the old run's `best` beside it.
    best = out / BEST_NAME
    if (best / CONFIG_NAME).is_file():
        shutil.rmtree(best)


def _check_lengths(train_ids, val_ids, test_ids, training: TrainConfig) -> None:
    need = min_tokens_for_one_batch(training.batch_size, training.seq_len)
    if len(train_ids) < need:
        raise CorpusError(
            f"the training text has {len(train_ids)} tokens, too few for one batch of "
            f"{training.batch_size} x {training.seq_len} (needs {need}); use a longer book "
            "or a smaller --batch-size / --seq-len"
        )
    if val_ids is not None and len(val_ids) < 2:
        raise CorpusError(
            "the validation text is shorter than 2 tokens; raise --val-fraction or set it to 0"
        )
    if test_ids is not None and len(test_ids) < 2:
        raise CorpusError("the test text is shorter than 2 tokens; raise --test-fraction")


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "model"


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m', '1h' or '1h30m'."""
    match = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"cannot read {text!r} as a duration; use e.g. 300, 90s, 10m or 1h")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return total
