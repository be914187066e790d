"""Tiny Shakespeare in 5 minutes of training: loss on the whole held-out text.

    python -m benchmarks.shakespeare_5min                                  # charlm's defaults
    python -m benchmarks.shakespeare_5min --name big -- --hidden 768 --lr 3e-3
    python -m benchmarks.shakespeare_5min --quick                          # a smoke run

Everything after `--` is a `charlm train` command line (the recipe); the benchmark runs
`charlm train TRAIN --val VAL --max-time 5m --eval-every 100 --out ... RECIPE` in this
process, through the same Click command a user types, so the recipe's options win over the
benchmark's defaults. Several recipes, each run under its own --name, collect in one JSON
file and one plot.

The split is nanoGPT's shakespeare_char: the first 90% of input.txt (1,003,854 characters)
trains, the last 10% (111,540 characters) is held out; both are written to a temporary
directory. After training, the final model reads the WHOLE held-out text in order, its state
carried, each character predicted from all before it (the first from a newline); the loss is
reported in nats and bits per character. The plot shows the validation loss logged during
training (every --eval-every steps, on the same text read as parallel streams) against
training wall time (evaluation not counted).

For scale, on the 2-core machine of issue 11: nanoGPT's CPU configuration reaches 1.89 nats
after its 2,000 iterations and 1.60 in 5 minutes; a bare 2 x 256 LSTM loop, 1.515.
Target: <= 1.47.
"""

from __future__ import annotations

import json
import math
import shlex
import tempfile
from pathlib import Path

import click
import torch

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    print_table,
    pyplot,
    threads_option,
)
from benchmarks.quality import merge_run
from charlm.checkpoint import read_config
from charlm.corpus import read_book
from charlm.sampling import load
from charlm.training.metrics_log import METRICS_LOG_NAME, read_metrics

BOOK = CORPORA / "tinyshakespeare" / "input.txt"
RESULTS = RESULTS_DIR / "shakespeare_5min.json"
TARGET = 1.47
REFERENCES = {"nanoGPT CPU config, 2,000 iterations": 1.89, "nanoGPT CPU config, 5 min": 1.60,
              "bare 2x256 LSTM loop, 5 min": 1.515}  # fmt: skip
QUICK_ARGS = ["--hidden", "32", "--layers", "1", "--embed", "16", "--seq-len", "32",
              "--batch-size", "8"]  # fmt: skip
QUICK_CHARACTERS = 20_000


def nanogpt_split(text: str) -> tuple[str, str]:
    """nanoGPT's shakespeare_char split: the first 90% and the rest."""
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


def train_command(train: Path, val: Path, out: Path, max_time: str, eval_every: int,
                  recipe: list[str]) -> list[str]:  # fmt: skip
    """The `charlm train` arguments: the benchmark's settings, then the recipe's (a rerun of a
    recipe replaces its last checkpoint)."""
    return ["train", str(train), "--val", str(val), "--max-time", max_time,
            "--eval-every", str(eval_every), "--out", str(out), "--overwrite",
            *recipe]  # fmt: skip


def user_command(max_time: str, eval_every: int, recipe: list[str]) -> str:
    """The command that trains this recipe, less the benchmark's file plumbing."""
    args = ["train", "TRAIN", "--val", "VAL", "--max-time", max_time,
            "--eval-every", str(eval_every), *recipe]  # fmt: skip
    return "charlm " + shlex.join(args)


def run_charlm_train(args: list[str]) -> None:
    """`charlm ARGS` in this process; a failure becomes this command's one-line error."""
    from charlm.cli import cli

    try:
        cli.main(args, prog_name="charlm", standalone_mode=False)
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"charlm {shlex.join(args)} failed: {exc}") from exc


def curve(checkpoint: Path) -> list[dict]:
    """(training seconds, validation nats per character) at each evaluation of the run."""
    records = read_metrics(checkpoint / METRICS_LOG_NAME)
    return [
        {"elapsed_s": r["elapsed_s"], "step": r["step"], "val_nats": r["val_bpc"] * math.log(2)}
        for r in records
        if r.get("val_bpc") is not None
    ]


def held_out_loss(checkpoint: Path, text: str) -> dict:
    """Nats and bits per character of the whole held-out text, read in order (on the GPU
    where there is one: a large model's 111,540 steps are slow on a CPU)."""
    score = load(checkpoint, device="auto").score(text)
    return {
        "held_out_characters": score.num_characters,
        "nats_per_char": score.bits_per_character * math.log(2),
        "bits_per_char": score.bits_per_character,
    }


def plot(runs: dict, out: Path) -> Path | None:
    """Validation loss against training wall time, one line per recipe."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in runs.items():
        points = run.get("curve") or []
        if points:
            ax.plot([p["elapsed_s"] for p in points], [p["val_nats"] for p in points],
                    marker=".", label=f"{name}: {run['nats_per_char']:.3f}")  # fmt: skip
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {TARGET}")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("Tiny Shakespeare, 5 minutes of training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


@click.command(cls=BenchmarkCommand, context_settings={"ignore_unknown_options": True})
@click.option("--quick", is_flag=True, help="A tiny model on 20k characters for 3 s (for CI).")
@click.option("--name", default="defaults", show_default=True, help="Name of this recipe's run.")
@click.option(
    "--max-time", default="5m", show_default=True, help="Training time budget (--max-time)."
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Steps between validation points of the curve (the recipe may override it).",
)
@threads_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON results file; the plot goes beside it.  [default: "
    "benchmarks/results/shakespeare_5min.json, or shakespeare_5min.quick.json with --quick]",
)
@click.argument("recipe", nargs=-1, type=click.UNPROCESSED)
def main(
    quick: bool,
    name: str,
    max_time: str,
    eval_every: int,
    threads: int | None,
    out: Path | None,
    recipe: tuple,
) -> None:
    """Train RECIPE (charlm train options, after --) for 5 minutes on Tiny Shakespeare."""
    if not BOOK.is_file():
        raise click.ClickException(f"Tiny Shakespeare is missing: {BOOK}")
    out = out or (RESULTS.with_suffix(".quick.json") if quick else RESULTS)
    text = read_book(BOOK).text
    if quick:
        text = text[:QUICK_CHARACTERS]
        max_time, eval_every, recipe = "3s", min(eval_every, 10), (*QUICK_ARGS, *recipe)
    if threads:  # charlm train's own option, so the recorded command has it (the recipe's wins)
        recipe = ("--threads", str(threads), *recipe)
    train_text, val_text = nanogpt_split(text)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_file, val_file = work / "train.txt", work / "val.txt"
        train_file.write_text(train_text, encoding="utf-8")
        val_file.write_text(val_text, encoding="utf-8")
        checkpoint = out.parent / "checkpoints" / "shakespeare" / name
        args = train_command(train_file, val_file, checkpoint, max_time, eval_every, list(recipe))
        run_charlm_train(args)
        config = read_config(checkpoint)
        results = config.get("results", {})
        seconds = results.get("train_seconds") or 0.0
        run = {
            "recipe": name,
            "quick": quick,
            "command": user_command(max_time, eval_every, list(recipe)),
            # what training and scoring ran on: charlm train sets it for this whole process
            "threads": torch.get_num_threads(),
            "model": config["model"],
            "training": config["training"],
            "steps": results.get("steps"),
            "train_seconds": results.get("train_seconds"),
            "tokens_per_s": results.get("tokens_seen", 0) / max(1e-9, seconds),
            **held_out_loss(checkpoint, val_text),
            "curve": curve(checkpoint),
            "target": TARGET,
        }
    content = merge_run(out, run)
    picture = plot(content["runs"], out.with_suffix(".png"))
    print_table(
        ["recipe", "nats/char", "bits/char", "steps", "train s", "tokens/s"],
        [
            (
                n,
                r["nats_per_char"],
                r["bits_per_char"],
                r["steps"],
                r["train_seconds"],
                r["tokens_per_s"],
            )  # fmt: skip
            for n, r in content["runs"].items()
        ],
    )
    print(f"target <= {TARGET} nats/char; for scale: " + json.dumps(REFERENCES))
    print(f"wrote {out}" + (f" and {picture}" if picture else ""))


if __name__ == "__main__":
    main()
