"""Which book is this passage from? One model per book; a passage goes to the book whose model
predicts it best, in bits per character (`charlm classify --models`), against character
5-gram models of the same books (benchmarks/ngram.py).

    python -m benchmarks.which_book            # seven books, a 5-minute model each
    python -m benchmarks.which_book --quick    # two books, seconds each: a smoke run
    python -m benchmarks.which_book --threads 1 --shared-minutes 20 --minutes 3 --jobs 2
    python -m benchmarks.which_book ... --model-options '--hidden 512 --layers 2 --embed 64'

The seven English books of ../shared/corpora: five from Project Gutenberg, The Time Machine
and Tiny Shakespeare. Each is read as `charlm train` reads it (Gutenberg boilerplate removed)
and its last 10% is held out; each model is trained on the rest with

    charlm train BOOK --test-fraction 0.1 --val-fraction 0.02 --tokenizer-option unk=true
        --hidden 256 --embed 32 --layers 1 --output-dropout 0.2 --max-time 5m --epochs 1000

(`unk=true` gives every model an <unk> token, so a character that one book never uses can be
scored, at the tiny probability the model learned for <unk>, instead of failing); each book's
best model on its validation text is the one compared. With `--shared-minutes M`, one model is
first trained on all seven books (their held-out tails excepted) for M minutes, and each
book's model is that one fine-tuned on the book (`--init-from`) for `--minutes`: all start
from the same English, so they differ by what is particular to their book. `--shared-model`
reuses the shared model of an earlier run (`--work W`: W/shared), so that runs differ only
by the books' fine-tuning. The passages are 50 stretches of 200 characters from each book's
held-out tail, evenly spaced; the same models are also scored on every 200 characters of the
tails, end to end (2,066 passages), over all and balanced over the books.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    print_table,
    results_option,
    threads_option,
    write_results,
)
from benchmarks.ngram import CharNgram
from charlm.corpus import SplitConfig, read_book, split_regions
from charlm.sampling import Sampler, by_bits_per_character, load

BOOKS = {
    "alice": "gutenberg/pg11.txt",
    "pride-and-prejudice": "gutenberg/1342-0.txt",
    "frankenstein": "gutenberg/84-0.txt",
    "moby-dick": "gutenberg/2701-0.txt",
    "room-with-a-view": "gutenberg/pg2641.cp1252.txt",
    "time-machine": "timemachine/timemachine.txt",
    "shakespeare": "tinyshakespeare/input.txt",
}
SPLITS = SplitConfig(val_fraction=0.02, test_fraction=0.1)
PASSAGE = 200
PASSAGES = 50
MODEL = ["--hidden", "256", "--embed", "32", "--layers", "1", "--output-dropout", "0.2"]
QUICK_MODEL = ["--hidden", "32", "--embed", "8", "--layers", "1", "--batch-size", "8"]
# Every model trains for its whole time: at the default 20 epochs the two shortest books'
# models stopped after about 2 of their 3 minutes, and theirs are the passages most missed.
UNTIL_THE_TIME_IS_UP = ["--epochs", "1000"]


def passages(text: str, count: int) -> list[str]:
    """`count` stretches of PASSAGE characters from the held-out tail, evenly spaced."""
    _, val_end = split_regions(len(text), SPLITS)
    tail = text[val_end:]
    starts = np.linspace(0, len(tail) - PASSAGE, count).astype(int)
    return [tail[s : s + PASSAGE] for s in starts]


def train(
    books: list[Path], out: Path, budget: str, threads: int | None, quick: bool,
    init_from: Path | None = None, options: tuple[str, ...] = (),
) -> float:  # fmt: skip
    """`charlm train` on `books` (a new model, or fine-tuning `init_from`); its wall time."""
    command = [sys.executable, "-m", "charlm", "train", *map(str, books), "--test-fraction",
               str(SPLITS.test_fraction), "--val-fraction", str(SPLITS.val_fraction),
               "--max-time", budget, "--out", str(out), "--overwrite", "--no-cache",
               "--device", "cpu", *UNTIL_THE_TIME_IS_UP]  # fmt: skip
    if init_from is None:
        command += ["--tokenizer-option", "unk=true", *(QUICK_MODEL if quick else MODEL)]
    else:  # the model, its tokenizer and their settings are init_from's
        command += ["--init-from", str(init_from)]
    command += options
    command += ["--threads", str(threads)] if threads else []
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"{out.name}: charlm train failed: {done.stderr[-500:]}")
    return time.perf_counter() - started


def every_stretch(text: str) -> list[str]:
    """Every PASSAGE characters of the held-out tail, end to end: 72 (Alice) to 609
    (Moby-Dick) a book, a steadier measure than 50 passages a book (one in 350 is 0.3 points)."""
    _, val_end = split_regions(len(text), SPLITS)
    tail = text[val_end:]
    return [tail[s : s + PASSAGE] for s in range(0, len(tail) - PASSAGE + 1, PASSAGE)]


def wide_accuracy(
    texts: dict[str, str], samplers: list[Sampler], ngrams: list[CharNgram]
) -> dict[str, Any]:
    """Both ways' accuracy on every stretch of every book's tail: over all of them (the long
    books weigh most), and balanced (the mean of the books' own, as the 50 passages are)."""
    per_book, right = {}, {"lm": 0, "ngram": 0}
    for index, (name, text) in enumerate(texts.items()):
        stretches = every_stretch(text)
        lm = lm_guesses(samplers, stretches)[1]
        ngram = ngram_guesses(ngrams, stretches)
        truth = [index] * len(stretches)
        per_book[name] = {"passages": len(stretches), "lm": accuracy(lm, truth),
                          "ngram": accuracy(ngram, truth)}  # fmt: skip
        right["lm"] += sum(g == index for g in lm)
        right["ngram"] += sum(g == index for g in ngram)
    total = sum(book["passages"] for book in per_book.values())
    return {
        "passages": total,
        **{f"{way}_accuracy": float(right[way] / total) for way in ("lm", "ngram")},
        **{
            f"{way}_balanced_accuracy": float(np.mean([b[way] for b in per_book.values()]))
            for way in ("lm", "ngram")
        },  # fmt: skip
        "books": per_book,
    }


def _best(checkpoint: Path) -> Path:
    return checkpoint / "best" if (checkpoint / "best" / "config.json").is_file() else checkpoint


def lm_guesses(samplers: list[Sampler], passages: list[str]) -> tuple[np.ndarray, list[int]]:
    """Each model's bits per character on each passage (passages, models), and the model
    `charlm classify --models` picks for each (the index of its sampler)."""
    bits = np.array([[s.score(p).bits_per_character for s in samplers] for p in passages])
    order = [str(i) for i in range(len(samplers))]
    return bits, [int(r.label) for r in by_bits_per_character(passages, bits, order)]


def ngram_guesses(ngrams: list[CharNgram], passages: list[str]) -> list[int]:
    """The 5-gram model that gives each passage the highest probability (its index)."""
    return [int(np.argmax([m.log_prob(p) for m in ngrams])) for p in passages]


def accuracy(predicted: list[int], truth: list[int]) -> float:
    return float(np.mean(np.array(predicted) == np.array(truth)))


def run_all(
    quick: bool, threads: int | None, work: Path, minutes: float, shared_minutes: float,
    jobs: int = 1, shared_model: Path | None = None, book_options: tuple[str, ...] = (),
    model_options: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    books = dict(list(BOOKS.items())[:2]) if quick else BOOKS
    count = 5 if quick else PASSAGES
    texts, held_out, truth = {}, [], []
    for index, (name, relative) in enumerate(books.items()):
        path = CORPORA / relative
        if not path.is_file():
            raise click.ClickException(f"a book is missing: {path}")
        texts[name] = read_book(path).text
        held_out += passages(texts[name], count)
        truth += [index] * count
    names = list(books)
    started = time.perf_counter()
    ngrams = []
    for name in names:
        train_end, _ = split_regions(len(texts[name]), SPLITS)
        ngrams.append(CharNgram(5, examples=False).fit([texts[name][:train_end]]))
    ngram_seconds = time.perf_counter() - started
    ngram_guess = ngram_guesses(ngrams, held_out)
    walls, shared, shared_threads = {}, shared_model, None
    if shared_minutes and shared_model is None:  # one model of all the books first
        shared = work / "shared"
        paths = [CORPORA / relative for relative in books.values()]
        # It runs alone: on the threads all the book jobs will share afterwards.
        shared_threads = threads * jobs if threads else None
        walls["shared"] = train(
            paths, shared, f"{shared_minutes:g}m", shared_threads, quick, options=model_options
        )
    budget = "5s" if quick else f"{minutes:g}m"
    # A new model's options go to each book's model when there is no shared one to start from.
    each_book = book_options if shared else model_options + book_options
    # Each book's training is a process of its own: `jobs` of them at once, on their own cores.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = {
            name: pool.submit(
                train,
                [CORPORA / relative],
                work / name,
                budget,
                threads,
                quick,
                shared,
                each_book,
            )
            for name, relative in books.items()
        }
    walls |= {name: run.result() for name, run in runs.items()}
    # Each book's best model on its validation text (the last one may have begun to overfit).
    samplers = [load(_best(work / name), device="cpu") for name in names]
    bits, lm_guess = lm_guesses(samplers, held_out)
    wide = wide_accuracy(texts, samplers, ngrams)
    # Models trained with --ngram: the same networks without their n-gram, side by side.
    alone = None
    if any(s.ngram is not None for s in samplers):
        plain = [load(_best(work / name), device="cpu", ngram=False) for name in names]
        alone = {
            "lm_accuracy": accuracy(lm_guesses(plain, held_out)[1], truth),
            "every_stretch": wide_accuracy(texts, plain, ngrams),
        }
    per_book = {
        name: {
            "lm": accuracy(
                lm_guess[i * count : (i + 1) * count], truth[i * count : (i + 1) * count]
            ),
            "ngram": accuracy(
                ngram_guess[i * count : (i + 1) * count], truth[i * count : (i + 1) * count]
            ),
            "bits_per_character": float(bits[i * count : (i + 1) * count, i].mean()),
            "train_wall_seconds": walls[name],
            "ngram_weight": samplers[i].ngram_weight if samplers[i].ngram is not None else None,
        }
        for i, name in enumerate(names)
    }
    return {
        "quick": quick,
        "minutes_per_book": minutes,
        "shared_minutes": shared_minutes,
        "shared_model": None if shared_model is None else str(shared_model),
        "book_options": book_options,
        "model_options": model_options,
        "jobs": jobs,
        "shared_threads": shared_threads,
        "shared_wall_seconds": walls.get("shared"),
        "passages": len(held_out),
        "passage_characters": PASSAGE,
        "lm_accuracy": accuracy(lm_guess, truth),
        "ngram_accuracy": accuracy(ngram_guess, truth),
        "ngram_fit_seconds": ngram_seconds,
        "books": per_book,
        "bits": bits.round(4).tolist(),  # passages × books, for a second look at the errors
        "every_stretch": wide,
        "network_alone": alone,
    }


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="Two books, seconds of training (for CI).")
@threads_option()
@click.option(
    "--minutes", type=float, default=5.0, show_default=True, help="Training time per book."
)
@click.option(
    "--shared-minutes",
    type=float,
    default=0.0,
    show_default=True,
    help="First train one model on all the books this long, then fine-tune a copy on each "
    "book (--init-from) for --minutes; 0: each book's model from scratch.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train this many books' models at once (each with --threads; give each a core); "
    "the shared model, alone, gets --threads times this.",
)
@click.option(
    "--shared-model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Fine-tune each book's model from this checkpoint (e.g. WORK/shared of an earlier "
    "run) instead of training a shared one.",
)
@click.option(
    "--model-options",
    default="",
    help="More `charlm train` options for each new model (the shared one, or else each "
    "book's), e.g. '--hidden 512 --layers 2 --precision bf16'.",
)
@click.option(
    "--book-options",
    default="",
    help="More `charlm train` options for each book's model, e.g. '--lr 1e-3'.",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the splits and models in this directory.  [default: a temporary one]",
)
@results_option(RESULTS_DIR / "which_book.json")
def main(
    quick: bool,
    threads: int | None,
    minutes: float,
    shared_minutes: float,
    jobs: int,
    shared_model: Path | None,
    model_options: str,
    book_options: str,
    work: Path | None,
    out: Path,
) -> None:
    """Which book is a 200-character passage from: book models against 5-gram models."""
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(
            quick,
            threads,
            work or Path(tmp),
            minutes,
            shared_minutes,
            jobs,
            shared_model,
            tuple(shlex.split(book_options)),
            tuple(shlex.split(model_options)),
        )
    print_table(
        ["book", "LM correct", "5-gram correct", "LM bits/char", "train wall s"],
        [
            (name, r["lm"], r["ngram"], r["bits_per_character"], r["train_wall_seconds"])
            for name, r in results["books"].items()
        ]
        + [("all", results["lm_accuracy"], results["ngram_accuracy"], None, None)],
    )
    wide = results["every_stretch"]
    print(f"\nEvery {PASSAGE} characters of the tails ({wide['passages']:,} passages):")
    print_table(
        ["book", "passages", "LM correct", "5-gram correct"],
        [(name, r["passages"], r["lm"], r["ngram"]) for name, r in wide["books"].items()]
        + [("all", wide["passages"], wide["lm_accuracy"], wide["ngram_accuracy"]),
           ("balanced", None, wide["lm_balanced_accuracy"], wide["ngram_balanced_accuracy"])],
    )  # fmt: skip
    alone = results["network_alone"]
    if alone is not None:
        wide = alone["every_stretch"]
        print(
            f"\nThe networks without their n-gram models: {alone['lm_accuracy']:.1%} of the "
            f"passages; every stretch {wide['lm_accuracy']:.1%}, balanced "
            f"{wide['lm_balanced_accuracy']:.1%}"
        )
    print(f"wrote {write_results(out, results)}")


if __name__ == "__main__":
    main()
