"""The Time Machine, the textbook's own experiment (Dive into Deep Learning, "RNN from
scratch"), with both batch iterators.

    python -m benchmarks.timemachine_textbook            # both iterators, 500 epochs each
    python -m benchmarks.timemachine_textbook --quick    # a tiny run: a smoke test

Preprocessing is a step of this benchmark, not a tokenizer option: as d2l's `_preprocess`,
every run of characters other than ASCII letters becomes one space and the text is
lower-cased; the first 10,000 characters of the result are the corpus (27 symbols: a-z and
space). It is written to a temporary file and trained on with charlm's char tokenizer, no
validation text.

The book's configuration: a one-layer RNN (tanh) with 512 hidden units fed one-hot vectors,
batch 32, 35 steps, plain SGD at lr 1 (no momentum), gradient norm clipped at 1, 500 epochs.
It reports a training perplexity (the last epoch's) of about 1.0 with the sequential
iterator, whose carried state lets the model memorise the text, and about 1.4 with the random
one, which restarts from zeros every batch.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import click

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    device_option,
    print_table,
    threads_option,
)
from benchmarks.quality import Recipe, merge_run, run_recipe
from charlm.corpus import read_book
from charlm.training import TrainConfig
from charlm.training.run import DataOptions

BOOK = CORPORA / "timemachine" / "timemachine.txt"
RESULTS = RESULTS_DIR / "timemachine_textbook.json"
NUM_CHARACTERS = 10_000
QUICK_CHARACTERS = 1_200
PUBLISHED = {"sequential": 1.0, "random": 1.4}
SOURCE = "Dive into Deep Learning, 9.5 Recurrent Neural Network Implementation from Scratch"


def textbook_text(raw: str, length: int = NUM_CHARACTERS) -> str:
    """d2l's preprocessing: non-letters → one space, lower case; the first `length` chars."""
    return re.sub("[^A-Za-z]+", " ", raw).lower()[:length]


def recipe(iterator: str) -> Recipe:
    return Recipe(
        name=iterator,
        description=f"1x512 RNN, one-hot, SGD lr 1, clip 1, 500 epochs, {iterator} iterator",
        model={
            "cell": "rnn",
            "one_hot": True,
            "hidden_size": 512,
            "num_layers": 1,
            "dropout": 0.0,
        },  # fmt: skip
        training=TrainConfig(
            batch_size=32,
            seq_len=35,
            epochs=500,
            optimizer="sgd",
            momentum=0.0,
            lr=1.0,
            clip=1.0,
            iterator=iterator,
            log_every=50,
        ),
        published={"train_perplexity": PUBLISHED[iterator]},
        source=SOURCE,
    )


def run(iterator: str, quick: bool, device: str, threads: int | None, work: Path) -> dict:
    if not BOOK.is_file():
        raise click.ClickException(f"The Time Machine is missing: {BOOK}")
    text = textbook_text(read_book(BOOK).text, QUICK_CHARACTERS if quick else NUM_CHARACTERS)
    corpus = work / "timemachine-10k.txt"
    corpus.write_text(text, encoding="utf-8")
    chosen = recipe(iterator)
    if quick:
        chosen = chosen.quick(epochs=5, hidden_size=32)
    out = work / "checkpoints" / iterator
    summary = run_recipe(chosen, corpus, out, data=DataOptions(val_fraction=0.0, use_cache=False),
                         device=device, threads=threads)  # fmt: skip
    summary["quick"] = quick
    summary["characters"] = len(text)
    summary["vocabulary"] = "".join(sorted(set(text)))
    return summary


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A small network for a few epochs (for CI).")
@click.option(
    "--iterator",
    "iterators",
    type=click.Choice(list(PUBLISHED)),
    multiple=True,
    help="Which iterator; repeatable.  [default: both]",
)
@device_option()
@threads_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON results file.  [default: benchmarks/results/timemachine_textbook.json, or "
    "timemachine_textbook.quick.json with --quick]",
)
def main(
    quick: bool, iterators: tuple[str, ...], device: str, threads: int | None, out: Path | None
) -> None:
    """The d2l Time Machine experiment: training perplexity of both iterators, wall time."""
    out = out or (RESULTS.with_suffix(".quick.json") if quick else RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        for iterator in iterators or list(PUBLISHED):
            content = merge_run(out, run(iterator, quick, device, threads, Path(tmp)))
    print_table(
        ["iterator", "train ppl", "book", "epochs", "steps", "train s", "wall s", "tokens/s"],
        [
            (
                name,
                r["train_perplexity"],
                r["published"]["train_perplexity"],
                r["epochs"],
                r["steps"],
                r["train_seconds"],
                r["wall_seconds"],
                r["tokens_per_s"],
            )
            for name, r in content["runs"].items()
        ],
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
