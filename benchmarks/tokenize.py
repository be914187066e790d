"""Tokenizer benchmark: encoding speed on a large text, and what each tokenizer does to a book.

    python -m benchmarks.tokenize            # 100 MB of WikiText-2 (train, repeated)
    python -m benchmarks.tokenize --quick    # 2 MB, small training sets: a smoke run for CI
    python -m benchmarks.tokenize --tokenizers word --against-loop-mb 10   # word alone, and
                                             # against the loop it replaced

Part 1, speed: each tokenizer is trained on (a part of) WikiText-2 and then encodes the large
text through `encode_array`, the call the training pipeline makes (char, byte and word
are vectorised NumPy; bpe, wordpiece and unigram go through the `tokenizers` batch API). MB/s
counts UTF-8 megabytes (10^6 bytes) of input per second. As `charlm train` does, glibc is
told to keep freed memory (`--malloc default` leaves it as it is): the word encoder's
blocks then reuse their pages (about 5% faster, within run-to-run noise).

Part 2, trade-offs on a real book: each tokenizer is trained on the first 90% of the book;
the table gives the vocabulary size, tokens per character of the whole book, and the share
of the held-out last 10% that comes out as <unk>.

The tables go to stdout and everything to benchmarks/results/tokenize.json.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import CORPORA, RESULTS_DIR, BenchmarkCommand, results_option, write_results
from charlm.corpus import read_book
from charlm.tokenizers import Tokenizer, train_tokenizer
from charlm.training.allocator import keep_freed_memory

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


def speed(
    corpus: str, size: int, train_chars: int, repeats: int, names: set[str] | None = None
) -> list[dict[str, Any]]:
    """Encoding speed of each tokenizer on `corpus` repeated to `size` characters.

    char, byte and word are timed `repeats` times and the best run counts (the first run also pays
    for the operating system handing out fresh memory for the id array).
    """
    big = repeat_to(corpus, size)
    rows = []
    for name, options in SPEED_CASES:
        if names is not None and name not in names:
            continue
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


def against_the_loop(corpus: str, size: int, rounds: int) -> dict[str, Any]:
    """The word encoder against the regular-expression loop it replaced (kept in the tests as
    their reference), on the same `size` characters, interleaved round by round; medians."""
    from tests.tokenizers.word_reference import reference_encode

    text = repeat_to(corpus, size)
    tokenizer = train_tokenizer("word", corpus, {})
    megabytes = len(text.encode("utf-8")) / MB
    seconds: dict[str, list[float]] = {"arrays": [], "loop": []}
    ids = {}
    for round_ in range(rounds):
        for name in ("arrays", "loop") if round_ % 2 == 0 else ("loop", "arrays"):
            encode = tokenizer.encode_array if name == "arrays" else partial(
                reference_encode, tokenizer)  # fmt: skip
            start = time.perf_counter()
            ids[name] = encode(text)
            seconds[name].append(time.perf_counter() - start)
    rates = {name: megabytes / statistics.median(s) for name, s in seconds.items()}
    return {
        "input_mb": round(megabytes, 2),
        "rounds": rounds,
        "arrays_mb_per_second": round(rates["arrays"], 1),
        "loop_mb_per_second": round(rates["loop"], 1),
        "speedup": round(rates["arrays"] / rates["loop"], 2),
        "ids_identical": bool(np.array_equal(ids["arrays"], ids["loop"])),
    }


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


@click.command(cls=BenchmarkCommand)
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
    "--tokenizers",
    "names",
    default=None,
    help="Comma-separated tokenizers whose speed to time (the book trade-offs are then "
    "skipped).  [default: all, and the book trade-offs]",
)
@click.option(
    "--against-loop-mb",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Also time the word encoder against the Python loop it replaced on this many MB, "
    "interleaved, and check their ids are identical.  [default: skip]",
)
@click.option(
    "--size-mb",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Size of the encoded text in MB.  [default: 100, --quick: 2]",
)
@click.option(
    "--malloc",
    type=click.Choice(["keep", "default"]),
    default="keep",
    show_default=True,
    help="keep: glibc keeps freed memory, as `charlm train` sets it before encoding; "
    "default: glibc's own behaviour.",
)
@results_option(RESULTS)
def main(quick: bool, corpus: Path, book: Path, names: str | None, against_loop_mb: float | None,
         size_mb: float | None, malloc: str, out: Path) -> None:  # fmt: skip
    """Measure tokenizer encoding speed and book-level trade-offs."""
    kept = malloc == "keep" and keep_freed_memory()
    size = int((size_mb or (2 if quick else 100)) * MB)
    train_chars = 200_000 if quick else 2_000_000
    corpus_text = read_book(corpus).text
    book_text = read_book(book).text
    if quick:
        book_text = book_text[:200_000]
    chosen = None if names is None else {n.strip() for n in names.split(",")}
    speed_rows = speed(corpus_text, size, train_chars, 1 if quick else 3, chosen)
    book_rows = book_tradeoffs(book_text) if chosen is None else []
    print_table(f"Encoding speed ({corpus.name} repeated to {size / MB:g} MB)", speed_rows)
    if book_rows:
        print_table(f"Trade-offs on {book.name} ({len(book_text):,} characters)", book_rows)
    loop = None
    if against_loop_mb is not None:
        loop = against_the_loop(corpus_text, int(against_loop_mb * MB), 1 if quick else 3)
        click.echo(f"\nword: arrays {loop['arrays_mb_per_second']} MB/s, the loop "
                   f"{loop['loop_mb_per_second']} MB/s ({loop['speedup']}x) on "
                   f"{loop['input_mb']} MB; ids identical: {loop['ids_identical']}")  # fmt: skip
    result = {
        "benchmark": "tokenize",
        "word_against_loop": loop,
        "quick": quick,
        "malloc_keeps_freed_memory": kept,
        "corpus": str(corpus),
        "size_mb": size / MB,
        "speed": speed_rows,
        "book": str(book),
        "book_tradeoffs": book_rows,
    }
    write_results(out, result)
    click.echo(f"\nwrote {out}")


if __name__ == "__main__":
    main()
