"""Train a model on a book end to end: the Python twin of `charlm train`.

text → tokenizer → ids → batches → model → training → checkpoint
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlm.checkpoint import save_checkpoint
from charlm.corpus import read_book, split_tail
from charlm.data import min_tokens_for_one_batch
from charlm.device import resolve_device
from charlm.errors import ConfigError, CorpusError
from charlm.models import ModelConfig, build_model, num_parameters
from charlm.tokenizers import train_tokenizer
from charlm.training import Reporter, TrainConfig, TrainResult, train

DEFAULT_CHECKPOINT_ROOT = Path("checkpoints")


@dataclass
class TrainedModel:
    """Where a run saved its model and what it achieved."""

    checkpoint: Path
    result: TrainResult
    num_parameters: int


def train_book(
    book: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    tokenizer: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    training: TrainConfig | None = None,
    val_fraction: float = 0.1,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> TrainedModel:
    """Train a model on `book` and save it to `out` (default `checkpoints/<book name>`).

    `model` holds ModelConfig settings (cell, embed_size, hidden_size, num_layers, dropout).
    `tokenizer` names a tokenizer (see `charlm tokenizers`); `tokenizer_options` are its
    training options, e.g. {"vocab_size": 4000} (strings are converted).
    """
    training = training or TrainConfig()
    resolved = resolve_device(device)
    source = read_book(book)
    train_text, val_text = split_tail(source.text, val_fraction)
    # The vocabulary comes from the whole book, so the validation text is always encodable.
    tok = train_tokenizer(tokenizer, source.text, tokenizer_options)
    train_ids = tok.encode_array(train_text)
    val_ids = tok.encode_array(val_text) if val_fraction > 0 else None
    _check_lengths(train_ids, val_ids, training)

    model_config = ModelConfig(vocab_size=tok.vocab_size, **(model or {}))
    with torch.random.fork_rng(devices=[resolved] if resolved.type == "cuda" else []):
        # Seed the weights and dropout masks from the run's seed without touching the
        # caller's global random state.
        torch.manual_seed(training.seed)
        net = build_model(model_config)
        result = train(net, train_ids, val_ids, training, device=resolved, reporter=reporter)

    out = Path(out) if out is not None else DEFAULT_CHECKPOINT_ROOT / _slug(source.path.stem)
    save_checkpoint(
        out,
        net,
        tok,
        training=training.to_dict(),
        data={
            "book": str(source.path),
            "encoding": source.encoding,
            "characters": len(source.text),
            "val_fraction": val_fraction,
            "train_tokens": int(len(train_ids)),
            "val_tokens": 0 if val_ids is None else int(len(val_ids)),
        },
        results=result.to_dict(),
        train_perplexity=result.train_perplexity,
        val_perplexity=result.val_perplexity,
    )
    return TrainedModel(out, result, num_parameters(net))


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
