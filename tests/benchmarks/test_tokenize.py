"""The tokenizer benchmark runs end to end in its --quick mode (no timing is asserted)."""

from __future__ import annotations

import json

from tests.benchmarks import run_benchmark
from tests.conftest import shared_corpus


def test_quick_benchmark_prints_tables_and_writes_json(tmp_path):
    corpus = shared_corpus("wikitext-2/train.txt")
    book = shared_corpus("gutenberg/84-0.txt")
    out = tmp_path / "tokenize.json"
    result = run_benchmark(
        "benchmarks.tokenize", "--quick", "--size-mb", "0.3", "--corpus", str(corpus),
        "--book", str(book), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Encoding speed" in result.stdout and "Trade-offs" in result.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    speed = {row["tokenizer"].split()[0]: row for row in data["speed"]}
    assert set(speed) == {"char", "byte", "word", "bpe", "wordpiece", "unigram"}
    assert all(row["mb_per_second"] > 0 for row in data["speed"])
    book_rows = {row["tokenizer"]: row for row in data["book_tradeoffs"]}
    assert book_rows["char"]["tokens_per_char"] == 1.0
    assert book_rows["byte"]["held_out_unk_percent"] == 0.0
    assert book_rows["word"]["tokens_per_char"] < 0.5


def test_word_alone_against_the_loop_it_replaced(tmp_path):
    corpus = shared_corpus("wikitext-2/train.txt")
    out = tmp_path / "tokenize.json"
    result = run_benchmark(
        "benchmarks.tokenize", "--quick", "--size-mb", "0.2", "--tokenizers", "word",
        "--against-loop-mb", "0.2", "--corpus", str(corpus), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [row["tokenizer"] for row in data["speed"]] == ["word"]
    assert data["book_tradeoffs"] == [] and "Trade-offs" not in result.stdout
    loop = data["word_against_loop"]
    assert loop["ids_identical"] and loop["loop_mb_per_second"] > 0
