"""Built-in tokenizers: round trips, saved state, unknown pieces, streaming, options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.errors import TokenizerError, UnknownTokenError
from charlm.tokenizers import (
    StreamDecoder,
    Tokenizer,
    available_tokenizers,
    get_tokenizer_class,
    register,
    tokenizer_from_state,
    train_tokenizer,
)

BOOK = (
    "It was the best of times, it was the worst of times.\n"
    'He said, "Come here (quickly)!" and she didn\'t; it cost $5 -- or 10% more...\n\n'
    "Café naïve 漢字かな 😀 e\u0301\n"
) * 30
# Pieces that break naive tokenizers: a ZWJ emoji sequence, a flag, combining marks, CJK,
# CRLF and a lone CR.
AWKWARD = [
    "👩‍👩‍👧",
    "🇫🇷",
    "😀",
    "e\u0301",
    "a\u0308\u0323",
    "漢字",
    "ｶﾀｶﾅ",
    "\r\n",
    "\r",
    "\t",
    " ",
]
any_text = st.lists(st.one_of(st.text(), st.sampled_from(AWKWARD)), max_size=8).map("".join)


@pytest.fixture(scope="module")
def byte_bpe() -> Tokenizer:
    return train_tokenizer("bpe", BOOK, {"vocab_size": 400})


def fresh(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer rebuilt from its state after a trip through JSON, as a checkpoint does."""
    state = json.loads(json.dumps(tokenizer.get_state()))
    return tokenizer_from_state(tokenizer.name, state)


# Round trips on arbitrary Unicode ------------------------------------------------------------


@given(any_text)
@pytest.mark.slow
def test_char_round_trips_any_text_it_was_trained_on(text):
    tokenizer = train_tokenizer("char", text or "x")
    assert tokenizer.decode(tokenizer.encode_array(text)) == text


@given(any_text)
def test_byte_round_trips_any_text(text):
    tokenizer = train_tokenizer("byte", "")
    ids = tokenizer.encode_array(text)
    assert ids.max(initial=0) < 256
    assert tokenizer.decode(ids) == text


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(any_text)
def test_byte_level_bpe_round_trips_text_it_never_saw(byte_bpe, text):
    assert byte_bpe.unk_id is None
    assert byte_bpe.decode(byte_bpe.encode_array(text)) == text


def test_long_text_is_encoded_in_slices_with_the_same_round_trip(byte_bpe):
    text = ("a line of text  with  spaces\n  indented\n\n" * 3000) + "end"
    assert byte_bpe.decode(byte_bpe.encode_array(text)) == text


# Saved state ---------------------------------------------------------------------------------

TRAINED = [
    ("char", {}),
    ("char", {"min_freq": 40, "lowercase": True}),
    ("byte", {}),
    ("word", {"min_freq": 2}),
    ("bpe", {"vocab_size": 300}),
    ("bpe", {"vocab_size": 300, "byte_level": False}),
    ("wordpiece", {"vocab_size": 300}),
    ("unigram", {"vocab_size": 150}),
]


@pytest.mark.parametrize(("name", "options"), TRAINED)
def test_restored_tokenizer_encodes_identically(name, options):
    tokenizer = train_tokenizer(name, BOOK, options)
    restored = fresh(tokenizer)
    text = BOOK[:500] + " unseen: Ωμέγα 🙂 zebra\n"
    assert restored.vocab_size == tokenizer.vocab_size
    for policy in ("skip", "unk") if tokenizer.unk_id is not None else ("skip",):
        ids = tokenizer.encode_array(text, policy)
        np.testing.assert_array_equal(restored.encode_array(text, policy), ids)
        assert restored.decode(ids) == tokenizer.decode(ids)
    assert 0 <= tokenizer.encode_array(BOOK).min() and tokenizer.encode_array(BOOK).max() < (
        tokenizer.vocab_size
    )


def test_hf_loads_a_tokenizer_json_and_keeps_it_in_its_state(byte_bpe, tmp_path):
    path = tmp_path / "tokenizer.json"
    byte_bpe.pipeline.save(str(path))
    loaded = train_tokenizer("hf", "ignored", {"path": str(path)})
    path.unlink()  # the state, not the file, is what a checkpoint keeps
    restored = fresh(loaded)
    np.testing.assert_array_equal(restored.encode_array(BOOK), byte_bpe.encode_array(BOOK))


@pytest.mark.parametrize(
    ("options", "message"),
    [({}, "needs the option path"), ({"path": "/nonexistent/tokenizer.json"}, "not a usable")],
)
def test_hf_without_a_usable_file_fails_with_one_line(options, message):
    with pytest.raises(TokenizerError, match=message) as info:
        train_tokenizer("hf", "text", options)
    assert "\n" not in str(info.value)


# Unknown pieces ------------------------------------------------------------------------------


def test_char_without_unk_names_the_unseen_characters():
    tokenizer = train_tokenizer("char", "hello world")
    with pytest.raises(UnknownTokenError, match=r"'z'") as info:
        tokenizer.encode_array("hello zebra")
    assert "'b'" in str(info.value) and "\n" not in str(info.value)
    assert tokenizer.decode(tokenizer.encode_array("hello zebra", "skip")) == "hello er"
    with pytest.raises(UnknownTokenError, match="no <unk>"):
        tokenizer.encode_array("hello", "unk")


def test_char_min_freq_maps_rare_characters_to_unk():
    tokenizer = train_tokenizer("char", "aaab", {"min_freq": "2"})
    assert tokenizer.unk_id is not None
    ids = tokenizer.encode_array("abz")
    assert list(ids) == [0, tokenizer.unk_id, tokenizer.unk_id]
    assert tokenizer.decode(ids) == "a\ufffd\ufffd"
    with pytest.raises(UnknownTokenError, match="'b' ×1, 'z' ×1"):
        tokenizer.encode_array("abz", "error")


def test_char_lowercase_folds_case_before_encoding():
    tokenizer = train_tokenizer("char", "Hello", {"lowercase": "true"})
    assert tokenizer.decode(tokenizer.encode_array("HELLO")) == "hello"


def test_word_policies_map_name_or_skip_unknown_words():
    tokenizer = train_tokenizer("word", "the cat sat on the mat.\n")
    assert "<unk>" in tokenizer.decode(tokenizer.encode_array("the dog sat."))
    with pytest.raises(UnknownTokenError, match="'dog'"):
        tokenizer.encode_array("the dog sat.", "error")
    assert tokenizer.decode(tokenizer.encode_array("the dog sat.", "skip")) == "the sat."


def test_unigram_error_policy_names_the_unknown_piece():
    tokenizer = train_tokenizer("unigram", BOOK, {"vocab_size": 150})
    with pytest.raises(UnknownTokenError, match="Ω"):
        tokenizer.encode_array("the Ω", "error")
    assert tokenizer.unk_id not in tokenizer.encode_array("the Ω", "skip")


def test_unknown_policy_must_be_one_of_three():
    with pytest.raises(TokenizerError, match="error, skip, unk"):
        train_tokenizer("byte", "").encode_array("x", "ignore")


# Word spacing --------------------------------------------------------------------------------


def test_word_decoding_restores_the_spacing_of_the_book():
    text = (
        'He said, "Come here (quickly)!" and she didn\'t; it cost $5 -- or 10% more...\n\n'
        "Odd spacing : kept , too.\n"
    )
    tokenizer = train_tokenizer("word", text)
    assert tokenizer.decode(tokenizer.encode_array(text)) == text


def test_word_normalises_only_runs_of_spaces_and_line_edges():
    tokenizer = train_tokenizer("word", "a b c")
    assert tokenizer.decode(tokenizer.encode_array("  a \t b   c  \n  b ")) == "a b c\nb"


def test_word_vocabulary_options():
    tokenizer = train_tokenizer("word", "a a a b b c", {"max_vocab": "2"})
    assert tokenizer.decode(tokenizer.encode_array("a b c")) == "a b <unk>"
    assert tokenizer.vocab_size == 2 + len(("<unk>", "<space>", "<nospace>", "\n"))


def test_word_split_at_spaces_keeps_pre_tokenized_text_as_it_is():
    text = " the company 's shares fell n't u.s. <unk> \n a b\n"
    tokenizer = train_tokenizer("word", text, {"split": "spaces"})
    assert tokenizer.vocab_size == 4 + len(
        {"the", "company", "'s", "shares", "fell", "n't", "u.s.", "a", "b"}
    )
    ids = tokenizer.encode_array(text)
    assert len(ids) == len(text.split()) + text.count("\n")  # no marker tokens needed
    assert tokenizer.decode(ids) == "the company 's shares fell n't u.s. <unk>\na b\n"


def test_word_treats_a_literal_unk_as_the_unknown_token():
    tokenizer = train_tokenizer("word", "the <unk> said\n")
    assert list(tokenizer.encode_array("<unk>")) == [tokenizer.unk_id]


# Round trips of the subword tokenizers, as docs/tokenizers.md describes them ------------------


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("x(y) a , b", "x ( y ) a, b"),
        ("“quoted”", "“ quoted ”"),
        ("don't 3.5", "don ' t 3. 5"),
        ("Hi?!  a\t\n\nb ", "Hi?! a b"),
        ("\n", ""),
    ],
)
def test_wordpiece_joins_words_and_marks_with_single_spaces(text, decoded):
    tokenizer = train_tokenizer("wordpiece", "x(y) a , b “quoted” don't 3.5 Hi?!\n" * 5)
    assert tokenizer.decode(tokenizer.encode_array(text)) == decoded


@pytest.mark.parametrize(("name", "options"), [("unigram", {}), ("bpe", {"byte_level": "false"})])
def test_metaspace_tokenizers_read_a_literal_metaspace_as_a_space(name, options):
    text = "a b  c\td\n\ne " * 5
    tokenizer = train_tokenizer(name, text, {"vocab_size": "60", **options})
    assert tokenizer.decode(tokenizer.encode_array(text)) == text  # whitespace kept as it is
    # "▁" (U+2581) never occurs in the book, yet it is not <unk>: it is the space marker.
    np.testing.assert_array_equal(tokenizer.encode_array("a▁b"), tokenizer.encode_array("a b"))
    assert tokenizer.decode(tokenizer.encode_array("a▁b")) == "a b"


# Streaming -----------------------------------------------------------------------------------


def stream(tokenizer: Tokenizer, ids, context=()) -> list[str]:
    decoder = tokenizer.stream_decoder(list(context))
    pieces = [decoder.step(int(i)) for i in ids] + [decoder.flush()]
    return [p for p in pieces if p]


@given(any_text)
def test_byte_stream_never_emits_half_a_character(text):
    tokenizer = train_tokenizer("byte", "")
    pieces = stream(tokenizer, tokenizer.encode_array(text))
    assert "".join(pieces) == text
    for piece in pieces:  # each piece is whole characters: it survives a UTF-8 round trip
        assert piece.encode("utf-8").decode("utf-8") == piece
    assert not any("\ufffd" in p for p in pieces)


def test_byte_stream_holds_back_an_unfinished_character():
    tokenizer = train_tokenizer("byte", "")
    decoder = tokenizer.stream_decoder()
    emitted = [decoder.step(b) for b in "😀".encode()]
    assert emitted == ["", "", "", "😀"]


@pytest.mark.parametrize(("name", "options"), TRAINED)
def test_stream_after_a_prefix_matches_decoding_the_whole(name, options):
    tokenizer = train_tokenizer(name, BOOK, options)
    text = BOOK[:300]
    ids = tokenizer.encode_array(text)
    cut = len(ids) // 2
    whole = tokenizer.decode(ids)
    assert (
        "".join(stream(tokenizer, ids[cut:], ids[:cut]))
        == whole[len(tokenizer.decode(ids[:cut])) :]
    )


# The word tokenizer's spacing of a quote depends on how many quotes came before it, far back
# in the text: it is the kind of tokenizer that overrides stream_decoder (and does).
LOCAL_DECODERS = [(name, options) for name, options in TRAINED if name != "word"]


@pytest.mark.parametrize(("name", "options"), LOCAL_DECODERS)
def test_the_generic_stream_decoder_matches_the_whole_text_in_short_windows(name, options):
    # The fallback a plugin without its own stream decoder gets, on the built-in tokenizers.
    tokenizer = train_tokenizer(name, BOOK, options)
    widest = []
    decode = tokenizer.decode

    def counted(ids):
        widest.append(len(ids))
        return decode(ids)

    tokenizer.decode = counted  # an instance attribute: this tokenizer alone
    ids = tokenizer.encode_array(BOOK[:2000])
    for cut in (0, len(ids) // 2):
        decoder = StreamDecoder(tokenizer, list(ids[:cut]))
        pieces = [decoder.step(int(i)) for i in ids[cut:]] + [decoder.flush()]
        assert "".join(pieces) == decode(ids)[len(decode(ids[:cut])) :]
    # Each step decodes a few ids, not the whole text so far: a stream costs its length.
    assert len(ids) > 200 and max(widest) <= StreamDecoder.CONTEXT_IDS + 8


def test_byte_level_bpe_streams_emoji_whole(byte_bpe):
    text = "😀👩‍👩‍👧漢字 e\u0301"
    pieces = stream(byte_bpe, byte_bpe.encode_array(text))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


# Options and the registry --------------------------------------------------------------------


def test_options_are_checked_and_converted():
    with pytest.raises(TokenizerError, match="no option 'size'.*vocab_size"):
        train_tokenizer("bpe", BOOK, {"size": "10"})
    with pytest.raises(TokenizerError, match="not a valid int"):
        train_tokenizer("word", BOOK, {"min_freq": "many"})
    with pytest.raises(TokenizerError, match="true or false"):
        train_tokenizer("char", BOOK, {"lowercase": "perhaps"})
    assert train_tokenizer("bpe", BOOK, {"vocab_size": "300"}).vocab_size <= 300
    # Byte-level BPE cannot have fewer tokens than bytes: said, not quietly made 256.
    with pytest.raises(TokenizerError, match="vocab_size 100 is too small: give 256 or more"):
        train_tokenizer("bpe", BOOK, {"vocab_size": "100"})
    assert train_tokenizer("bpe", BOOK, {"vocab_size": "100", "byte_level": "false"}).vocab_size


HF_NEEDS_PATH = (
    "the hf tokenizer needs the option path (the tokenizer.json file to load): "
    "--tokenizer-option path=VALUE"
)
# (tokenizer, options, the whole message): each value is out of range or not one of the choices.
OUT_OF_RANGE = [
    ("byte", {"vocab_size": "5"}, "the byte tokenizer has no option 'vocab_size' (it takes none)"),
    ("char", {"min_freq": "0"}, "tokenizer option min_freq=0 must be at least 1"),
    ("char", {"min_freq": "-3"}, "tokenizer option min_freq=-3 must be at least 1"),
    ("word", {"min_freq": "0"}, "tokenizer option min_freq=0 must be at least 1"),
    ("word", {"max_vocab": "-1"}, "tokenizer option max_vocab=-1 must be at least 0"),
    ("word", {"split": "chars"}, "tokenizer option split='chars' must be one of words, spaces"),
    ("bpe", {"vocab_size": "0"}, "tokenizer option vocab_size=0 must be at least 1"),
    (
        "bpe",
        {"vocab_size": "-5", "byte_level": "false"},
        "tokenizer option vocab_size=-5 must be at least 1",
    ),
    ("bpe", {"min_freq": "-1"}, "tokenizer option min_freq=-1 must be at least 0"),
    ("wordpiece", {"vocab_size": "0"}, "tokenizer option vocab_size=0 must be at least 1"),
    # Past the limits the library itself aborts the process (vocab_size) or overflows.
    (
        "wordpiece",
        {"min_freq": str(2**70)},
        f"tokenizer option min_freq={2**70} must be at most {2**63 - 1:,}",
    ),
    ("unigram", {"vocab_size": "0"}, "tokenizer option vocab_size=0 must be at least 1"),
    (
        "unigram",
        {"vocab_size": str(2**40)},
        f"tokenizer option vocab_size={2**40} must be at most 4,194,304",
    ),
    ("hf", {}, HF_NEEDS_PATH),
    ("hf", {"path": ""}, HF_NEEDS_PATH),
]


@pytest.mark.parametrize(("name", "options", "message"), OUT_OF_RANGE)
def test_check_options_refuses_what_train_would_and_with_the_same_line(name, options, message):
    # check_options is what `charlm train` runs before reading a book (exit 2); train, called
    # from Python, must refuse by the very same rule.
    cls = get_tokenizer_class(name)
    with pytest.raises(TokenizerError) as early:
        cls.check_options(options)
    assert str(early.value) == message
    with pytest.raises(TokenizerError) as late:
        cls.train("some text\n", **options)
    assert str(late.value) == message


def test_values_at_the_limits_are_accepted():
    assert get_tokenizer_class("char").check_options({"min_freq": "1"}) == {"min_freq": 1}
    word = {"min_freq": 1, "max_vocab": 0, "split": "spaces"}
    assert get_tokenizer_class("word").check_options({k: str(v) for k, v in word.items()}) == word
    assert get_tokenizer_class("wordpiece").check_options({"min_freq": "0"}) == {"min_freq": 0}
    assert get_tokenizer_class("unigram").check_options({"vocab_size": 4 * 1024 * 1024})
    assert get_tokenizer_class("byte").check_options({}) == {}


def test_the_listing_shows_each_options_limits_as_the_check_applies_them():
    from click.testing import CliRunner

    from charlm.cli import cli

    listing = CliRunner().invoke(cli, ["tokenizers"]).output
    for line in (
        "min_freq=int: characters seen fewer times become <unk> (implies unk) (default 1; "
        "at least 1)",
        "split=str: words: by the regular expression; spaces: at spaces only (default words; "
        "words or spaces)",
        "vocab_size=int: size of the vocabulary to learn (default 2000; 1 to 4,194,304)",
        "path=str: the tokenizer.json file to load (required)",
        # The library's own 64-bit ceiling is not a choice a user makes: not listed.
        "min_freq=int: pieces seen fewer times are not added (default 2; at least 0)",
    ):
        assert line in listing
    # Every limit listed is one the check applies: one step past it is refused.
    for name in ("char", "word", "bpe", "unigram", "wordpiece"):
        cls = get_tokenizer_class(name)
        for key, option in cls.options.items():
            if option.low is not None:
                with pytest.raises(TokenizerError, match="must be at least"):
                    cls.check_options({key: str(option.low - 1)})
            if option.choices is not None:
                with pytest.raises(TokenizerError, match="must be one of"):
                    cls.check_options({key: "not-a-choice"})


def test_only_a_tokenizer_that_declares_no_options_at_all_gets_them_raw():
    class Loose(Tokenizer):  # no `options`: whatever is given, as given
        name = "test-loose"

    class Strict(Loose):
        options = {}  # declared empty: takes none

    assert Loose.check_options({"anything": "1"}) == {"anything": "1"}
    with pytest.raises(TokenizerError, match="no option 'anything' \\(it takes none\\)"):
        Strict.check_options({"anything": "1"})


def test_every_built_in_is_listed_as_built_in():
    builtins = {i.name for i in available_tokenizers() if i.origin == "built in"}
    assert builtins >= {"char", "byte", "word", "bpe", "wordpiece", "unigram", "hf"}


def test_a_tokenizer_registered_in_code_is_found_by_name():
    @register(name="test-upper")
    class Upper(type(train_tokenizer("char", "A"))):
        description = "uppercase characters"

        @classmethod
        def train(cls, text, **options):
            return super().train(text.upper(), **options)

        def encode(self, text):
            return super().encode(text.upper())

    assert get_tokenizer_class("test-upper") is Upper
    tokenizer = train_tokenizer("test-upper", "abc")
    assert tokenizer.decode(tokenizer.encode_array("CAB")) == "CAB"
    info = next(i for i in available_tokenizers() if i.name == "test-upper")
    assert info.origin == "registered in code"


def test_special_ids_are_banned_from_sampling_unless_unk_is_allowed():
    tokenizer = train_tokenizer("word", "a b")
    assert tokenizer.banned_ids() == [tokenizer.unk_id]
    assert tokenizer.banned_ids(allow_unk=True) == []
    assert train_tokenizer("byte", "").banned_ids() == []
