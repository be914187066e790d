"""What the quality benchmarks share: a recipe, a run through `charlm.train_book`, results.

A `Recipe` is a published configuration written as charlm settings. `run_recipe` trains it
exactly as `charlm train` would (same API, same checkpoint and metrics log) and returns a
summary; `merge_run` keeps one JSON file per benchmark with the latest run of each recipe.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.common import finite, machine_info
from charlm.checkpoint import CONFIG_NAME, load_checkpoint
from charlm.corpus import read_book
from charlm.device import resolve_device
from charlm.metrics import perplexity
from charlm.training import TrainConfig, evaluate
from charlm.training.metrics_log import METRICS_LOG_NAME, read_metrics
from charlm.training.progress import LineReporter
from charlm.training.run import DataOptions, train_book

QUICK_MODEL = {"embed_size": 16, "hidden_size": 16}


@dataclass
class Recipe:
    """A configuration to train, and the published figures it is compared with."""

    name: str
    description: str
    model: dict[str, Any]
    training: TrainConfig
    tokenizer: str = "char"
    tokenizer_options: dict[str, Any] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def quick(self, epochs: int = 2, **model: Any) -> Recipe:
        """The same recipe on a tiny model for a few epochs: a smoke run."""
        training = replace(self.training, epochs=epochs)
        return replace(self, model={**self.model, **QUICK_MODEL, **model}, training=training)

    def settings(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "tokenizer_options": self.tokenizer_options,
            "model": self.model,
            "training": self.training.to_dict(),
        }


def run_recipe(
    recipe: Recipe,
    book: str | Path,
    out: Path,
    *,
    data: DataOptions,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Train `recipe` on `book` into checkpoint directory `out`; a summary of the run."""
    console = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    with LineReporter(console, interval_s=30.0) as reporter:
        trained = train_book(
            book,
            out=out,
            tokenizer=recipe.tokenizer,
            tokenizer_options=recipe.tokenizer_options,
            model=recipe.model,
            training=recipe.training,
            data=data,
            device=device,
            reporter=reporter,
            threads=threads,
            overwrite=True,  # a benchmark's rerun replaces its last run
        )
    wall = time.perf_counter() - started
    r = trained.result
    return {
        "recipe": recipe.name,
        "description": recipe.description,
        "settings": recipe.settings(),
        "published": recipe.published,
        "source": recipe.source,
        "checkpoint": str(trained.checkpoint),
        "best_checkpoint": str(trained.best) if trained.best else None,
        "num_parameters": trained.num_parameters,
        "steps": r.steps,
        "epochs": r.epochs,
        "stopped_by": r.stopped_by,
        "train_seconds": r.train_seconds,
        "wall_seconds": wall,
        "tokens_per_s": r.tokens_seen / max(r.train_seconds, 1e-9),
        "train_perplexity": r.train_perplexity,
        "val_perplexity": r.val_perplexity,
        "best_val_perplexity": r.best_val_perplexity,
        "test_perplexity_training_batches": trained.test_perplexity,
        "validation_curve": validation_curve(out / METRICS_LOG_NAME),
    }


def validation_curve(metrics_log: Path) -> list[dict[str, Any]]:
    """Each evaluation of a run's metrics log: epoch, step, training seconds, perplexity."""
    if not metrics_log.is_file():
        return []
    keys = ("epoch", "step", "elapsed_s", "val_perplexity")
    return [{k: r.get(k) for k in keys} for r in read_metrics(metrics_log) if "val_perplexity" in r]


def file_perplexity(
    checkpoint: str | Path, path: str | Path, *, streams: int, seq_len: int, device: str = "auto"
) -> float:
    """Perplexity of the model in `checkpoint` on the text of `path`, read as `streams`
    parallel streams (1: the whole text in order, the state carried throughout)."""
    resolved = resolve_device(device)
    loaded = load_checkpoint(checkpoint, resolved)
    ids = loaded.tokenizer.encode_array(read_book(path).text)
    loss = evaluate(loaded.model, ids, batch_size=streams, seq_len=seq_len, device=resolved)
    return perplexity(loss)


def best_or_last(run: dict[str, Any]) -> str:
    """The best-validation checkpoint of a run when it kept one, else its last."""
    best = run.get("best_checkpoint")
    if best and (Path(best) / CONFIG_NAME).is_file():
        return best
    return run["checkpoint"]


def slice_lines(path: Path, lines: int, out_dir: Path) -> Path:
    """The first `lines` lines of `path`, written to `out_dir` (a temporary directory)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(path, encoding="utf-8") as f:
        head = [line for _, line in zip(range(lines), f)]
    target = out_dir / path.name
    target.write_text("".join(head), encoding="utf-8")
    return target


def merge_run(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Write `run` (with the machine it ran on) into the JSON file `out`, keeping the runs of
    other recipes there; returns the whole file's content."""
    content: dict[str, Any] = {"runs": {}}
    if out.is_file():
        try:
            content = json.loads(out.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            content = {"runs": {}}
    content.setdefault("runs", {})[run["recipe"]] = {**run, "machine": machine_info()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(content), indent=2) + "\n", encoding="utf-8")
    return content


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference − 1, or None when either is missing."""
    if value is None or not reference:
        return None
    return value / reference - 1.0
