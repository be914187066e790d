"""The word tokenizer's array encoder gives the ids of the regular-expression loop it replaced
(tests/tokenizers/word_reference.py), on odd text, at block edges, with hash collisions, and on
the real corpora."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.errors import UnknownTokenError
from charlm.tokenizers import wordscan
from charlm.tokenizers.word import WordTokenizer
from tests.conftest import shared_corpus
from tests.tokenizers.word_reference import reference_encode

# Pieces that exercise every branch of the regular expression and of the spacing rule.
PIECES = [
    "word", "Word", "don't", "well-known", "rock’n’roll", "a--b", "-x", "x-", "'", "’", "-",
    "<unk>", "<unk>s", "a<unk>", "<UNK>", "<<unk>>", "<un", '"', "“", "”", "(", ")", "[", "]",
    ".", ",", "...", "…", "$5", "50%", "«", "»", "_under_", "x²", "e\u0301", "Ωμέγα", "漢字",
    "😀", "\x00", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "\r", "\t", "\ud800",
    "averyveryverylongword", "ünïcödé",
    # Around the packed keys' limits: 8 and 16 characters, and characters 255 and 256.
    "eight_c8", "nine_ch_9", "sixteen_chars_16", "seventeen_char_17", "ÿ", "ÿÿ", "Ā", "aĀ",
]  # fmt: skip
SEPARATORS = ["", " ", "  ", "\n", "\n\n", " \n ", "\t"]
texts = st.lists(st.tuples(st.sampled_from(SEPARATORS), st.sampled_from(PIECES)), max_size=40).map(
    lambda parts: "".join(sep + piece for sep, piece in parts)
)


def encode_both(tokenizer: WordTokenizer, text: str, unknown: str):
    """(array encoder's result, reference's result): ids, or the error message."""
    results = []
    for encode in (tokenizer.encode_array, lambda t, u: reference_encode(tokenizer, t, u)):
        try:
            results.append(encode(text, unknown).tolist())
        except UnknownTokenError as exc:
            results.append(str(exc))
    return results


@settings(max_examples=150, deadline=None)
@given(
    train=texts,
    text=texts,
    split=st.sampled_from(["words", "spaces"]),
    lowercase=st.booleans(),
    unknown=st.sampled_from(["unk", "skip", "error"]),
    block_chars=st.sampled_from([wordscan.BLOCK_CHARS, 1, 5]),
)
def test_ids_equal_the_reference_loop_on_odd_text(
    train, text, split, lowercase, unknown, block_chars
):
    tokenizer = WordTokenizer.train(train, split=split, lowercase=lowercase)
    # Small blocks: many of them, marked on threads, each from the context before it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wordscan, "BLOCK_CHARS", block_chars)
        new, old = encode_both(tokenizer, text, unknown)
    assert new == old


@pytest.mark.parametrize("split", ["words", "spaces"])
def test_blocks_cut_at_whitespace_change_nothing(monkeypatch, split):
    text = 'He said "don\'t go" (twice).\n\n  "Open\nquote...\tand <unk>s  x-y\n' * 5
    tokenizer = WordTokenizer.train(text[:60], split=split)
    monkeypatch.setattr(wordscan, "BLOCK_CHARS", 7)
    assert len(wordscan._blocks(text)) > 20
    for unknown in ("unk", "skip"):
        expected = reference_encode(tokenizer, text, unknown).tolist()
        assert tokenizer.encode_array(text, unknown).tolist() == expected


def thue_morse(length: int, letters: str) -> str:
    return "".join(letters[bin(i).count("1") % 2] for i in range(length))


def test_a_hash_collision_never_gives_a_wrong_id():
    # Thue-Morse words collide under any odd-base polynomial hash modulo 2**64.
    first, second = thue_morse(256, "ab"), thue_morse(256, "ba")
    codes = wordscan.code_points(first + second)
    hashes = wordscan.polynomial_hashes(codes, np.array([0, 256]), np.array([256, 512]))
    assert hashes[0] == hashes[1]  # only the comparison of characters tells them apart
    only_first = WordTokenizer([first])
    assert only_first.encode_array(second).tolist() == [only_first.unk_id]
    with pytest.raises(UnknownTokenError):
        only_first.encode_array(f"{first} {second}", "error")
    both = WordTokenizer([first, second])
    ids = both.encode_array(f"{second} {first}").tolist()
    assert ids == [both.stoi[second], both.stoi[first]]


def test_an_empty_text_and_a_text_of_spaces_have_no_tokens():
    tokenizer = WordTokenizer.train("a b")
    assert tokenizer.encode_array("").tolist() == []
    assert tokenizer.encode_array(" \t ").tolist() == []


CORPORA = [
    "ptb/ptb.train.txt",
    "wikitext-2/train.txt",
    "gutenberg/pg11.txt",
    "gutenberg/1342-0.txt",
    "gutenberg/84-0.txt",
    "gutenberg/2701-0.txt",
]


@pytest.mark.corpus
@pytest.mark.parametrize("relative", CORPORA)
@pytest.mark.parametrize("split", ["words", "spaces"])
def test_ids_equal_the_reference_loop_on_the_real_corpora(monkeypatch, relative, split):
    monkeypatch.setattr(wordscan, "BLOCK_CHARS", 20_000)  # some 15 blocks, on threads
    text = shared_corpus(relative).read_bytes().decode("utf-8-sig")[:300_000]  # CRs kept
    # A vocabulary from the first half, with min_freq 2: the second half has unknown words.
    tokenizer = WordTokenizer.train(text[: len(text) // 2], split=split, min_freq=2)
    for unknown in ("unk", "skip"):
        new = tokenizer.encode_array(text, unknown)
        assert np.array_equal(new, reference_encode(tokenizer, text, unknown))
