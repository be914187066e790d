import numpy as np
import pytest

from charlm.errors import TokenizerError, UnknownTokenError
from charlm.tokenizers import get_tokenizer_class, tokenizer_from_state
from charlm.tokenizers.char import CharTokenizer

TEXT = "Héllo, wörld! 你好 🙂\r\ncombining: e\u0301\n"


def test_round_trip_on_unicode():
    tokenizer = CharTokenizer.train(TEXT)
    assert tokenizer.decode(tokenizer.encode(TEXT).tolist()) == TEXT


def test_vocabulary_is_the_distinct_characters():
    tokenizer = CharTokenizer.train("abracadabra")
    assert tokenizer.vocab_size == 5
    ids = tokenizer.encode("abracadabra")
    assert ids.dtype == np.int64 and ids.max() < 5


def test_state_is_json_and_restores_an_identical_tokenizer():
    import json

    tokenizer = CharTokenizer.train(TEXT)
    state = json.loads(json.dumps(tokenizer.get_state()))
    restored = tokenizer_from_state("char", state)
    assert np.array_equal(restored.encode(TEXT), tokenizer.encode(TEXT))


def test_unseen_characters_are_named():
    tokenizer = CharTokenizer.train("abc")
    with pytest.raises(UnknownTokenError, match="'x', 'y'"):
        tokenizer.encode("axby")


def test_registry_finds_char_and_refuses_unknown_names():
    assert get_tokenizer_class("char") is CharTokenizer
    with pytest.raises(TokenizerError, match="no tokenizer named 'klingon'"):
        get_tokenizer_class("klingon")


def test_stream_decoder_emits_each_character():
    tokenizer = CharTokenizer.train(TEXT)
    decoder = tokenizer.stream_decoder()
    assert "".join(decoder.step(i) for i in tokenizer.encode(TEXT)) == TEXT
