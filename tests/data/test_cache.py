"""The token cache: smallest dtype, content keys, memory maps, atomic entries, fast path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from charlm.corpus import SplitConfig, split_regions
from charlm.data import prepare, sequential_batches
from charlm.data.cache import TokenCache, cache_root, smallest_uint_dtype
from charlm.data.prepare import prepare_data
from charlm.tokenizers.char import CharTokenizer
from tests.conftest import TINY_TEXT
from tests.helpers import run_cli


@pytest.fixture
def books(tmp_path: Path) -> list[Path]:
    first = tmp_path / "first.txt"
    first.write_text(TINY_TEXT, encoding="utf-8")
    second = tmp_path / "second.txt"
    second.write_text("Ünïcödé 中文 “quotes” and more text.\n" * 30, encoding="utf-8")
    return [first, second]


def entries(root: Path) -> list[str]:
    tokens = root / "tokens"
    return sorted(p.name for p in tokens.iterdir()) if tokens.is_dir() else []


def test_ids_use_the_smallest_unsigned_type():
    assert smallest_uint_dtype(256) == np.uint8
    assert smallest_uint_dtype(257) == np.uint16
    assert smallest_uint_dtype(65_536) == np.uint16
    assert smallest_uint_dtype(65_537) == np.uint32


def test_cache_lives_in_charlm_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("CHARLM_CACHE")
    assert cache_root() == Path.home() / ".cache" / "charlm"


def test_second_run_is_served_memory_mapped_from_the_cache(books, tmp_path):
    root = tmp_path / "cache"
    first = prepare_data(books, cache_dir=root)
    assert not first.cached and first.report()[-1].startswith("tokenized 2 books")
    assert first.report()[0].startswith(f"read {books[0]}: utf-8")
    second = prepare_data(books, cache_dir=root)
    assert second.cached and second.report() == [second.report()[-1]]
    assert second.report()[-1].startswith("cached:")
    assert second.info["cache"]["hit"] and not first.info["cache"]["hit"]
    assert isinstance(second.train_ids, np.memmap) and second.train_ids.dtype == np.uint8
    assert second.tokenizer.get_state() == first.tokenizer.get_state()
    np.testing.assert_array_equal(second.train_ids, first.train_ids)
    np.testing.assert_array_equal(second.val_ids, first.val_ids)
    assert second.info["books"] == first.info["books"]
    assert len(entries(root)) == 1
    # Batches are slices of the memory map; nothing copies the whole corpus.
    x, y = next(sequential_batches(second.train_ids, 2, 8, seed=0))
    assert x.shape == (2, 8) and (x[:, 1:] == y[:, :-1]).all()


def test_ids_decode_back_to_the_split_text(books, tmp_path):
    data = prepare_data(books, splits=SplitConfig(0.2, 0.1), cache_dir=tmp_path)
    texts = [p.read_text(encoding="utf-8") for p in books]
    train = val = test = ""
    for text in texts:
        cut_val, cut_test = split_regions(len(text), SplitConfig(0.2, 0.1))
        train += text[:cut_val]
        val += text[cut_val:cut_test]
        test += text[cut_test:]
    decode = data.tokenizer.decode
    assert decode(data.train_ids) == train
    assert decode(data.val_ids) == val
    assert decode(data.test_ids) == test


def test_changed_content_or_settings_miss_the_cache(books, tmp_path):
    root = tmp_path / "cache"
    prepare_data(books, cache_dir=root)
    assert not prepare_data(books, splits=SplitConfig(0.2), cache_dir=root).cached
    assert not prepare_data(books, keep_boilerplate=True, cache_dir=root).cached
    books[0].write_text(TINY_TEXT + "one more line\n", encoding="utf-8")
    assert not prepare_data(books, cache_dir=root).cached
    assert prepare_data(books, cache_dir=root).cached
    # A renamed copy of the same bytes is the same corpus.
    renamed = books[0].rename(books[0].with_name("renamed.txt"))
    hit = prepare_data([renamed, books[1]], cache_dir=root)
    assert hit.cached and hit.info["books"][0]["path"] == str(renamed)


def test_a_given_tokenizer_is_part_of_the_key(books, tmp_path):
    wide = CharTokenizer(sorted(set(TINY_TEXT + books[1].read_text(encoding="utf-8") + "XYZ")))
    built = prepare_data(books, cache_dir=tmp_path)
    given = prepare_data(books, tokenizer=wide, cache_dir=tmp_path)
    assert not given.cached and given.tokenizer is wide
    assert wide.decode(given.train_ids) == built.tokenizer.decode(built.train_ids)


def test_the_tokenizer_a_run_trained_finds_that_runs_entry(books, tmp_path):
    # A resumed run encodes with the tokenizer the first run trained: same ids, same entry.
    first = prepare_data(books, cache_dir=tmp_path)
    again = prepare_data(
        books,
        tokenizer=first.tokenizer,
        cache_dir=tmp_path,
        cached_as=first.info["cache"]["tokenizer"],
    )
    assert again.cached and again.info["cache"]["key"] == first.info["cache"]["key"]
    assert len(entries(tmp_path)) == 1
    # ... but not when the tokenizer is another one under the same name and options.
    other = CharTokenizer(sorted(set(TINY_TEXT + books[1].read_text(encoding="utf-8") + "Q")))
    given = prepare_data(
        books, tokenizer=other, cache_dir=tmp_path, cached_as=first.info["cache"]["tokenizer"]
    )
    assert not given.cached and len(entries(tmp_path)) == 2


def test_the_summary_leaves_out_splits_the_run_has_not(books, tmp_path):
    without_test = prepare_data(books, cache_dir=tmp_path).report()[-1]
    assert "train 2,835 / validation 315 tokens (uint8)" in without_test
    only_train = prepare_data(books, cache_dir=tmp_path, splits=SplitConfig(val_fraction=0))
    assert "train 3,150 tokens (uint8)" in only_train.report()[-1]
    with_test = prepare_data(books, cache_dir=tmp_path, splits=SplitConfig(test_fraction=0.1))
    assert "/ test " in with_test.report()[-1]


def test_no_cache_writes_nothing(books, tmp_path):
    data = prepare_data(books, use_cache=False, cache_dir=tmp_path / "cache")
    assert not data.cached and not (tmp_path / "cache").exists()
    assert data.info["cache"]["path"] is None


def test_a_failed_build_leaves_no_entry_behind(books, tmp_path, monkeypatch):
    root = tmp_path / "cache"

    def broken(writer, split, pieces, tok, dtype):
        writer.sink(split, 10, dtype).write(np.ones(5, dtype))
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "_encode_into", broken)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(books, cache_dir=root)
    assert entries(root) == []  # neither an entry nor a temporary directory


def test_a_damaged_entry_is_rebuilt(books, tmp_path):
    root = tmp_path / "cache"
    first = prepare_data(books, cache_dir=root)
    os.remove(Path(first.info["cache"]["path"]) / "train.npy")
    again = prepare_data(books, cache_dir=root)
    assert not again.cached
    np.testing.assert_array_equal(again.train_ids, first.train_ids)
    assert prepare_data(books, cache_dir=root).cached


def test_char_fast_path_matches_the_tokenizer_across_chunk_boundaries(books, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "_CHUNK", 7)  # many chunks, boundaries everywhere
    data = prepare_data(books, splits=SplitConfig(0.25, 0.1), use_cache=False)
    texts = [p.read_text(encoding="utf-8") for p in books]
    reference = CharTokenizer.train("".join(texts))
    assert data.tokenizer.get_state() == reference.get_state()
    train = "".join(t[: split_regions(len(t), SplitConfig(0.25, 0.1))[0]] for t in texts)
    np.testing.assert_array_equal(data.train_ids, reference.encode(train))


def test_token_cache_entries_are_published_whole(tmp_path):
    cache = TokenCache(tmp_path)
    with cache.writer("k") as writer:
        writer.sink("train", 5, np.dtype(np.uint8)).write(np.arange(1, 6))
        assert cache.load("k") is None  # not visible until the block ends
        writer.finish({"note": "x"})
    loaded = cache.load("k")
    assert loaded is not None and loaded.meta["note"] == "x"
    assert list(loaded.arrays["train"]) == [1, 2, 3, 4, 5]


# What decides the ids is in the key; an entry is checked before use ----------------------------


def word_level(path: Path, words: list[str]) -> str:
    vocab = {word: i for i, word in enumerate(["<unk>", *words])}
    spec = {
        "version": "1.0",
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        "pre_tokenizer": {"type": "Whitespace"},
    }
    path.write_text(json.dumps(spec), encoding="utf-8")
    return str(path)


def test_a_replaced_tokenizer_file_misses_the_cache(books, tmp_path):
    words = sorted(set(TINY_TEXT.replace(".", " ").split()))
    path = word_level(tmp_path / "tokenizer.json", words)
    options = {"tokenizer": "hf", "tokenizer_options": {"path": path}, "cache_dir": tmp_path}
    first = prepare_data(books[:1], **options)
    assert prepare_data(books[:1], **options).cached
    word_level(tmp_path / "tokenizer.json", words[::-1])  # the same path, other ids
    again = prepare_data(books[:1], **options)
    # Unchecked, the old ids were reused: a model trained on ids the file no longer gives.
    assert not again.cached
    assert again.tokenizer.decode(again.train_ids) == first.tokenizer.decode(first.train_ids)
    assert not np.array_equal(again.train_ids, first.train_ids)
    word_level(tmp_path / "elsewhere.json", words[::-1])  # the same content elsewhere: a hit
    elsewhere = {**options, "tokenizer_options": {"path": str(tmp_path / "elsewhere.json")}}
    assert prepare_data(books[:1], **elsewhere).cached


def tamper(data, change) -> None:
    path = Path(data.info["cache"]["path"]) / "train.npy"
    ids = np.load(path)
    os.remove(path)  # the loaded map still reads the old file
    np.save(path, change(ids))


@pytest.mark.parametrize(
    "change",
    [
        lambda ids: ids[:1000],  # shorter than the metadata says
        lambda ids: np.full_like(ids, 250),  # ids past the vocabulary
        lambda ids: ids.astype(np.int64),  # another type
        lambda ids: ids.reshape(-1, 2) if len(ids) % 2 == 0 else ids[:-1].reshape(-1, 2),
    ],
)
def test_an_entry_that_disagrees_with_its_metadata_is_built_again(books, tmp_path, change):
    first = prepare_data(books, cache_dir=tmp_path)
    tamper(first, change)
    again = prepare_data(books, cache_dir=tmp_path)
    assert not again.cached
    np.testing.assert_array_equal(again.train_ids, first.train_ids)
    assert prepare_data(books, cache_dir=tmp_path).cached


def test_training_on_a_tampered_cache_trains_on_the_right_ids(tiny_book, tmp_path):
    args = ["train", tiny_book, "--hidden", "8", "--layers", "1", "--batch-size", "2"]
    args += ["--seq-len", "8", "--max-steps", "1", "--device", "cpu"]
    assert run_cli(*args, "--out", tmp_path / "a").exit_code == 0
    cache = next((Path(os.environ["CHARLM_CACHE"]) / "tokens").iterdir())
    ids = np.load(cache / "train.npy")
    os.remove(cache / "train.npy")
    np.save(cache / "train.npy", np.full_like(ids, 250))
    # Unchecked: IndexError from the embedding, a traceback.
    result = run_cli(*args, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "tokenized 1 book" in result.output
