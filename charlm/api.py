"""Train a model on a book end to end: the Python twin of `charlm train`.

text → tokenizer → ids → batches → model → training → checkpoint
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlm.checkpoint import save_checkpoint
from charlm.corpus import DEFAULT_CORPUS_DIR, SplitConfig, input_name, resolve_inputs
from charlm.data import min_tokens_for_one_batch
from charlm.device import resolve_device
from charlm.errors import ConfigError, CorpusError
from charlm.metrics import perplexity
from charlm.models import ModelConfig, build_model, num_parameters
from charlm.prepare import prepare_data
from charlm.training import Reporter, SilentReporter, TrainConfig, TrainResult, evaluate, train

DEFAULT_CHECKPOINT_ROOT = Path("checkpoints")


@dataclass
class TrainedModel:
    """Where a run saved its model and what it achieved."""

    checkpoint: Path
    result: TrainResult
    num_parameters: int
    test_perplexity: float | None = None


def train_book(
    book: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    tokenizer: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    training: TrainConfig | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    val_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    encoding: str | None = None,
    keep_boilerplate: bool = False,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    corpus_dir: str | os.PathLike = DEFAULT_CORPUS_DIR,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> TrainedModel:
    """Train a model on `book` and save it to `out` (default `checkpoints/<book name>`).

    `book` is a file, a directory of .txt files, a glob, a catalogue name (downloaded into
    `corpus_dir` when needed) or a list of these. `tokenizer` names a tokenizer (see
    `charlm tokenizers`); `tokenizer_options` are its training options, e.g.
    {"vocab_size": 4000}. `model` holds ModelConfig settings (cell, embed_size, hidden_size,
    num_layers, dropout). Validation and test text come from the end
    of every book (`val_fraction`, `test_fraction`) or from `val_file` / `test_file`; the test
    text is scored once, after training.
    """
    training = training or TrainConfig()
    resolved = resolve_device(device)
    say = (reporter or SilentReporter()).message
    splits = SplitConfig(
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        val_file=None if val_file is None else str(val_file),
        test_file=None if test_file is None else str(test_file),
    )
    data = prepare_data(
        resolve_inputs(book, corpus_dir=corpus_dir, message=say),
        tokenizer=tokenizer,
        tokenizer_options=tokenizer_options,
        splits=splits,
        encoding=encoding,
        keep_boilerplate=keep_boilerplate,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
    tok, train_ids, val_ids = data.tokenizer, data.train_ids, data.val_ids
    _check_lengths(train_ids, val_ids, training)
    if data.test_ids is not None and len(data.test_ids) < 2:
        raise CorpusError("the test text is shorter than 2 tokens; raise --test-fraction")
    for line in data.report():
        say(line)

    model_config = ModelConfig(vocab_size=tok.vocab_size, **(model or {}))
    with torch.random.fork_rng(devices=[resolved] if resolved.type == "cuda" else []):
        # Seed the weights and dropout masks from the run's seed without touching the
        # caller's global random state.
        torch.manual_seed(training.seed)
        net = build_model(model_config)
        result = train(net, train_ids, val_ids, training, device=resolved, reporter=reporter)
    test_perplexity = _test_perplexity(net, data.test_ids, training, resolved, say)

    out = Path(out) if out is not None else DEFAULT_CHECKPOINT_ROOT / _slug(input_name(book))
    save_checkpoint(
        out,
        net,
        tok,
        training=training.to_dict(),
        data=data.info,
        results=result.to_dict(),
        train_perplexity=result.train_perplexity,
        val_perplexity=result.val_perplexity,
        test_perplexity=test_perplexity,
    )
    return TrainedModel(out, result, num_parameters(net), test_perplexity)


def _test_perplexity(net, test_ids, training: TrainConfig, device, say) -> float | None:
    if test_ids is None:
        return None
    loss = evaluate(
        net, test_ids, batch_size=training.batch_size, seq_len=training.seq_len, device=device
    )
    say(f"test perplexity {perplexity(loss):.3f} on {len(test_ids):,} tokens")
    return perplexity(loss)


def _check_lengths(train_ids, val_ids, training: TrainConfig) -> None:
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
