"""Tokenizer benchmark: encoding speed on a large text, and what each tokenizer does to a book.

    python -m benchmarks.tokenize            # 100 MB of WikiText-2 (train, repeated)
    python -m benchmarks.tokenize --quick    # 2 MB, small training sets: a smoke run for CI

Part 1, speed: each tokenizer is trained on (a part of) WikiText-2 and then encodes the large
text through `encode_array`, the call the training pipeline makes (char, byte and word
are vectorised NumPy; bpe, wordpiece and unigram go through the `tokenizers` batch API). MB/s
counts UTF-8 megabytes (10^6 bytes) of input per second.

Part 2, trade-offs on a real book: each tokenizer is trained on the first 90% of the book;
the table gives the vocabulary size, tokens per character of the whole book, and the share
of the held-out last 10% that comes out as <unk>.

The tables go to stdout and everything to benchmarks/results/tokenize.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import CORPORA, RESULTS_DIR, results_option
from charlm.corpus import read_book
from charlm.tokenizers import Tokenizer, train_tokenizer

RESULTS = RESULTS_DIR / "tokenize.json"
MB = 1_000_000

# name, options, characters of WikiText-2 to train on (None: all of it)
SPEED_CASES: list[tuple[str, dict[str, Any]]] = [
    ("char", {}),
    ("byte", {}),
    ("word", {}),
    ("bpe", {"vocab_size": 8000}),
    ("wordpiece", {"vocab_size": 8000}),
    ("unigram", {"vocab_size": 8000}),
]
BOOK_CASES: list[tuple[str, dict[str, Any]]] = [
    ("char", {}),
    ("byte", {}),
    ("word", {}),
    ("word", {"min_freq": 2}),
    ("bpe", {"vocab_size": 1000}),
    ("bpe", {"vocab_size": 4000}),
    ("wordpiece", {"vocab_size": 4000}),
    ("unigram", {"vocab_size": 4000}),
]
SUBWORD = {"bpe", "wordpiece", "unigram"}
FAST = {"char", "byte", "word"}


def label(name: str, options: dict[str, Any]) -> str:
    return name + "".join(f" {k}={v}" for k, v in options.items())


def repeat_to(text: str, size: int) -> str:
    """`text` repeated and cut to `size` characters."""
    return (text * (size // len(text) + 1))[:size]


def timed_encode(tokenizer: Tokenizer, text: str, repeats: int) -> tuple[int, list[float]]:
    """Number of tokens and the seconds of each of `repeats` encodings of `text`."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        ids = tokenizer.encode_array(text)
        seconds.append(time.perf_counter() - start)
        count = len(ids)
        del ids  # free the 800 MB before the next run allocates its own
    return count, seconds


def speed(corpus: str, size: int, train_chars: int, repeats: int) -> list[dict[str, Any]]:
    """Encoding speed of each tokenizer on `corpus` repeated to `size` characters.

    char, byte and word are timed `repeats` times and the best run counts (the first run also pays
    for the operating system handing out fresh memory for the id array).
    """
    big = repeat_to(corpus, size)
    rows = []
    for name, options in SPEED_CASES:
        start = time.perf_counter()
        # Subword models learn from a slice (their training is slow); char and word need
        # the whole corpus, or the repeated text would hold characters they never saw.
        sample = corpus[:train_chars] if name in SUBWORD else corpus
        tokenizer = train_tokenizer(name, sample, options)
        train_seconds = time.perf_counter() - start
        count, runs = timed_encode(tokenizer, big, repeats if name in FAST else 1)
        seconds = min(runs)
        megabytes = len(big.encode("utf-8")) / MB
        rows.append(
            {
                "tokenizer": label(name, options),
                "vocab_size": tokenizer.vocab_size,
                "train_chars": len(sample),
                "train_seconds": round(train_seconds, 3),
                "input_mb": round(megabytes, 2),
                "tokens": count,
                "encode_seconds": round(seconds, 3),
                "runs_seconds": [round(r, 3) for r in runs],
                "mb_per_second": round(megabytes / seconds, 1),
            }
        )
    return rows


def book_tradeoffs(book: str) -> list[dict[str, Any]]:
    cut = int(len(book) * 0.9)
    rows = []
    for name, options in BOOK_CASES:
        tokenizer = train_tokenizer(name, book[:cut], options)
        unknown = unknown_share(tokenizer, book[cut:])
        rows.append(
            {
                "tokenizer": label(name, options),
                "vocab_size": tokenizer.vocab_size,
                "tokens_per_char": round(len(tokenizer.encode_array(book, "skip")) / len(book), 3),
                "held_out_unk_percent": round(100 * unknown, 2),
            }
        )
    return rows


def unknown_share(tokenizer: Tokenizer, text: str) -> float:
    """Share of `text` the tokenizer cannot represent: <unk> tokens, or dropped characters."""
    if tokenizer.unk_id is not None:
        return float(np.mean(tokenizer.encode_array(text, "unk") == tokenizer.unk_id))
    kept = tokenizer.decode(tokenizer.encode_array(text, "skip"))
    return 1 - len(kept) / len(text)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    columns = [c for c in rows[0] if not isinstance(rows[0][c], list)]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    click.echo(f"\n{title}")
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = (
            str(row[c]).rjust(w) if c != "tokenizer" else str(row[c]).ljust(w)
            for c, w in zip(columns, widths, strict=True)
        )
        click.echo("  ".join(cells))


@click.command()
@click.option("--quick", is_flag=True, help="A 2 MB smoke run (for CI), not a measurement.")
@click.option(
    "--corpus",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=CORPORA / "wikitext-2" / "train.txt",
    show_default=True,
    help="Text repeated to the benchmark size and used to train the subword models.",
)
@click.option(
    "--book",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=CORPORA / "gutenberg" / "1342-0.txt",
    show_default=True,
    help="The real book of the trade-off table.",
)
@click.option(
    "--size-mb",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Size of the encoded text in MB.  [default: 100, --quick: 2]",
)
@results_option(RESULTS)
def main(quick: bool, corpus: Path, book: Path, size_mb: float | None, out: Path) -> None:
    """Measure tokenizer encoding speed and book-level trade-offs."""
    size = int((size_mb or (2 if quick else 100)) * MB)
    train_chars = 200_000 if quick else 2_000_000
    corpus_text = read_book(corpus).text
    book_text = read_book(book).text
    if quick:
        book_text = book_text[:200_000]
    speed_rows = speed(corpus_text, size, train_chars, 1 if quick else 3)
    book_rows = book_tradeoffs(book_text)
    print_table(f"Encoding speed ({corpus.name} repeated to {size / MB:g} MB)", speed_rows)
    print_table(f"Trade-offs on {book.name} ({len(book_text):,} characters)", book_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "tokenize",
        "quick": quick,
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "corpus": str(corpus),
        "size_mb": size / MB,
        "speed": speed_rows,
        "book": str(book),
        "book_tradeoffs": book_rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    click.echo(f"\nwrote {out}")


if __name__ == "__main__":
    main()
