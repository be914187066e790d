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
    with pytest.raises(UnknownTokenError, match="'x' ×1, 'y' ×1"):
        tokenizer.encode("axby")


def test_unseen_characters_above_latin1_are_named_exactly():
    # Code points beyond the lookup table were once all reported as 'ÿ' (the table's end).
    tokenizer = CharTokenizer.train("Hello, she said. abc\n")
    with pytest.raises(UnknownTokenError) as info:
        tokenizer.encode("“Hello,” she said — café 🙂")
    assert str(info.value) == (
        "the text has 6 characters the model never saw (6 in all): 'f' ×1, 'é' ×1, '—' ×1, "
        "'“' ×1, '”' ×1, '🙂' ×1; pass unknown=\"skip\" to drop them"
    )
    assert "ÿ" not in str(info.value)
    assert info.value.unseen == {"f": 1, "é": 1, "—": 1, "“": 1, "”": 1, "🙂": 1}


def test_every_unseen_character_is_counted_over_the_whole_text():
    # Not just those of the first chunk with a problem: the text here spans several chunks.
    tokenizer = CharTokenizer.train("abc ", unk=True)
    text = "ab é" * 20_000 + "(c)" * 5 + "".join(chr(0x4E00 + i) for i in range(30))
    with pytest.raises(UnknownTokenError) as info:
        tokenizer.encode_array(text, "error")
    message, unseen = str(info.value), info.value.unseen
    assert len(unseen) == 33 and unseen["é"] == 20_000 and unseen["("] == unseen[")"] == 5
    assert message.startswith(
        "the text has 33 characters the model never saw (20,040 in all): 'é' ×20,000, "
        "'(' ×5, ')' ×5, '一' ×1, "
    )
    assert message.endswith(
        ' and 13 more; pass unknown="skip" to drop them '
        '(or pass unknown="unk" to read them as <unk>)'
    )
    assert info.value.describe("book.txt", "use --unknown {policy}").startswith(
        "book.txt has 33 characters the model never saw (20,040 in all): 'é' ×20,000"
    )


def test_registry_finds_char_and_refuses_unknown_names():
    assert get_tokenizer_class("char") is CharTokenizer
    with pytest.raises(TokenizerError, match="no tokenizer named 'klingon'"):
        get_tokenizer_class("klingon")


def test_stream_decoder_emits_each_character():
    tokenizer = CharTokenizer.train(TEXT)
    decoder = tokenizer.stream_decoder()
    assert "".join(decoder.step(i) for i in tokenizer.encode(TEXT)) == TEXT
