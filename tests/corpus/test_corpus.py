"""Reading any book: encodings, line endings, Gutenberg boilerplate, refusals, inputs, splits."""

from __future__ import annotations

import codecs
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.corpus import SplitConfig, read_book, resolve_inputs, split_regions
from charlm.corpus.gutenberg import strip_boilerplate
from charlm.errors import ConfigError, CorpusError
from tests.conftest import TINY_TEXT, shared_corpus
from tests.helpers import TINY_MODEL_ARGS

PG_HEADER = (
    "The Project Gutenberg eBook of A Tiny Tale\n\nThis eBook is for the use of anyone.\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***\n\n\n"
)
PG_FOOTER = (
    "\n\n*** END OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***\n\n"
    "Updated editions will replace the previous one.\nSTART: FULL LICENSE\n"
)
OLD_FOOTER = (
    "\nEnd of the Project Gutenberg EBook of A Tiny Tale, by\nSomebody\n\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK A TINY TALE ***\n\n***** This file should be named\n"
)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the hard real cases in ../shared/corpora -------------------------------------------------


@pytest.mark.corpus
def test_cp1252_crlf_book_is_detected_with_its_curly_quotes():
    book = read_book(shared_corpus("gutenberg/pg2641.cp1252.txt"))
    assert book.encoding == "cp1252"
    assert book.line_endings == "crlf" and "\r" not in book.text
    assert "“" in book.text and "’" in book.text and "—" in book.text
    assert "æ" in book.text  # cp1250 would have made this 'ś'
    assert "\ufffd" not in book.text


@pytest.mark.corpus
def test_gbk_book_decodes_exactly_as_strict_gbk():
    path = shared_corpus("chinese/sanguoyanyi.gbk.txt")
    book = read_book(path)
    assert book.encoding == "gb18030"  # GBK's superset, same characters for GBK bytes
    assert book.text == path.read_bytes().decode("gbk")
    assert "三国" in book.text or "曹操" in book.text


@pytest.mark.corpus
def test_gb18030_book_with_user_defined_codes_is_read_as_gb18030():
    path = shared_corpus("chinese/hongloumeng.gb18030.txt")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("gbk")
    book = read_book(path)
    assert book.encoding == "gb18030"
    assert book.text == path.read_bytes().decode("gb18030")
    assert "宝玉" in book.text


@pytest.mark.corpus
def test_utf8_bom_crlf_book_loses_bom_crs_and_boilerplate():
    book = read_book(shared_corpus("gutenberg/2701-0.txt"))
    assert (book.encoding, book.bom, book.line_endings) == ("utf-8", True, "crlf")
    assert not book.text.startswith("\ufeff") and "\r" not in book.text
    assert "PROJECT GUTENBERG" not in book.text.upper()[:2000]
    assert "Call me Ishmael" in book.text
    assert book.boilerplate_removed > 10_000


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("relative", "first_words"),
    [
        ("gutenberg/pg11.txt", "Alice’s Adventures in Wonderland"),  # new markers
        ("gutenberg/1342-0.txt", "PRIDE AND PREJUDICE"),  # old markers
        ("gutenberg/84-0.txt", "Frankenstein"),
    ],
)
def test_gutenberg_header_and_licence_are_removed_in_both_marker_styles(relative, first_words):
    path = shared_corpus(relative)
    kept = read_book(path, keep_boilerplate=True)
    book = read_book(path)
    assert book.boilerplate_removed == len(kept.text) - len(book.text) > 5_000
    assert first_words.lower() in book.text[:1000].lower()
    for marker in ("*** START OF", "*** END OF", "FULL LICENSE", "End of the Project Gutenberg"):
        assert marker.lower() not in book.text.lower()
    assert "*** START OF" in kept.text and kept.boilerplate_removed == 0


@pytest.mark.corpus
def test_plain_books_are_left_alone():
    book = read_book(shared_corpus("timemachine/timemachine.txt"))
    assert (book.encoding, book.boilerplate_removed) == ("utf-8", 0)


# --- synthetic encodings ---------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-8"])
def test_byte_order_marks_decide_the_encoding(tmp_path, codec):
    text = "Ünïcödé “quotes” and 中文 text.\n" * 20
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-8": codecs.BOM_UTF8,
    }[codec]
    book = read_book(write(tmp_path, "b.txt", bom + text.encode(codec)))
    assert book.text == text and book.bom


@pytest.mark.parametrize(
    ("mark", "codec", "named"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
        (codecs.BOM_UTF8, "utf-8", "utf-8"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
        (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    ],
)
def test_a_named_encoding_records_the_mark_it_removed(tmp_path, mark, codec, named):
    # utf-8-sig, utf-16 and utf-32 drop the mark themselves while decoding (either byte order).
    text = "words\n" * 10
    book = read_book(write(tmp_path, "b.txt", mark + text.encode(codec)), encoding=named)
    assert (book.text, book.bom) == (text, True)
    if codec == "utf-8":
        assert not read_book(write(tmp_path, "c.txt", text.encode(codec)), encoding=named).bom


def test_utf16_without_a_mark_needs_the_encoding_named(tmp_path):
    text = "plain words in UTF-16, no byte-order mark\n" * 10
    path = write(tmp_path, "u16.txt", text.encode("utf-16-le"))
    with pytest.raises(CorpusError, match="binary file.*--encoding"):
        read_book(path)
    assert read_book(path, encoding="utf-16-le").text == text


def test_cr_and_mixed_line_endings_become_lf(tmp_path):
    assert read_book(write(tmp_path, "cr.txt", b"one\rtwo\rthree\r")).text == "one\ntwo\nthree\n"
    mixed = read_book(write(tmp_path, "mixed.txt", b"a\r\nb\rc\nd"))
    assert (mixed.text, mixed.line_endings) == ("a\nb\nc\nd", "mixed")


def test_latin1_text_is_detected(tmp_path):
    text = "Le cœur a ses raisons que la raison ne connaît point. Déjà vu, garçon!\n" * 30
    book = read_book(write(tmp_path, "fr.txt", text.encode("cp1252")))
    assert book.text == text


def test_forced_encoding_is_used_and_a_wrong_one_is_refused(tmp_path):
    path = write(tmp_path, "q.txt", "“quoted” text, plainly\n".encode("cp1252") * 20)
    assert read_book(path, encoding="cp1252").text.startswith("“quoted”")
    assert read_book(path, encoding="cp1250").encoding == "cp1250"
    with pytest.raises(CorpusError, match=r"iso8859-1 to 8\.7% control .* likely cp1252"):
        read_book(path, encoding="latin-1")  # the quotes land on C1 control codes
    binary = write(tmp_path, "b.bin", bytes(range(256)) * 4)
    with pytest.raises(CorpusError, match="control characters; it is not text") as refused:
        read_book(binary, encoding="latin-1")
    assert "cp1252" not in str(refused.value)
    with pytest.raises(CorpusError, match="not valid utf-8.*--encoding"):
        read_book(path, encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown encoding"):
        read_book(path, encoding="klingon")
    for codec in ("rot13", "zlib", "undefined"):  # codecs, but not of bytes into text
        with pytest.raises(ConfigError, match="not a text encoding"):
            read_book(path, encoding=codec)


# --- refusals --------------------------------------------------------------------------------


def test_binary_files_are_refused_with_their_kind(tmp_path):
    archive = tmp_path / "book.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("book.txt", TINY_TEXT)
    with pytest.raises(CorpusError, match="zip archive"):
        read_book(archive)
    png = write(tmp_path, "x.txt", b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CorpusError, match="PNG image"):
        read_book(png)
    with pytest.raises(CorpusError, match="binary"):
        read_book(write(tmp_path, "b.bin", b"abc\x00\x01\x02" * 100))


@pytest.mark.parametrize(
    ("mark", "codec"), [(b"", "utf-8"), (codecs.BOM_UTF8, "utf-8"), (b"", "cp1252")]
)
def test_a_nul_byte_anywhere_makes_a_binary_file(tmp_path, mark, codec):
    # Past the first 8 KB that are sniffed, and behind a UTF-8 mark: binary all the same.
    text = "Plain text, “quoted”, for many lines.\n" * 400 + "a\x00b\n"
    path = write(tmp_path, "late-nul.txt", mark + text.encode(codec))
    with pytest.raises(CorpusError, match="late-nul.txt looks like a binary file") as info:
        read_book(path)
    assert "\n" not in str(info.value)
    # Named, an encoding is trusted with NUL bytes (as UTF-16 without a mark must be).
    assert read_book(path, encoding=codec).text.endswith("a\x00b\n")


def test_utf16_with_a_mark_may_hold_nul_characters(tmp_path):
    text = "Plain text\n" * 800 + "a\x00b\n"
    assert read_book(write(tmp_path, "u16.txt", text.encode("utf-16"))).text == text


def test_files_with_nothing_usable_are_refused(tmp_path):
    with pytest.raises(CorpusError, match="empty"):
        read_book(write(tmp_path, "empty.txt", b""))
    with pytest.raises(CorpusError, match="empty or only whitespace"):
        read_book(write(tmp_path, "blank.txt", b" \r\n\t\n"))
    with pytest.raises(CorpusError, match="control characters|encoding"):
        read_book(write(tmp_path, "ctl.txt", bytes(range(1, 9)) * 500))
    only_boilerplate = (PG_HEADER + PG_FOOTER).encode()
    with pytest.raises(CorpusError, match="--keep-boilerplate"):
        read_book(write(tmp_path, "pg.txt", only_boilerplate))


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_book(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="directory"):
        read_book(tmp_path)


# --- Gutenberg, synthetic --------------------------------------------------------------------


def test_boilerplate_is_cut_at_the_markers_in_both_styles():
    body = "Chapter 1\n\nIt was a tiny tale.\n"
    assert strip_boilerplate(PG_HEADER + body + PG_FOOTER) == body
    assert strip_boilerplate(PG_HEADER.replace("THE PROJECT", "THIS PROJECT") + body + OLD_FOOTER)
    assert strip_boilerplate(PG_HEADER + body + OLD_FOOTER) == body
    assert strip_boilerplate(body) is body  # no markers: untouched


def test_books_joined_in_one_file_each_keep_their_text():
    first, second = "Chapter 1\n\nIt was a tiny tale.\n", "Book II\n\nAnother one.\n"
    joined = PG_HEADER + first + PG_FOOTER + PG_HEADER + second + OLD_FOOTER
    assert strip_boilerplate(joined) == first + "\n" + second
    # A book whose end marker is missing runs to the next book's start marker.
    assert strip_boilerplate(PG_HEADER + first + PG_HEADER + second + PG_FOOTER).startswith(first)


# --- inputs ----------------------------------------------------------------------------------


def test_inputs_are_files_directories_and_globs(tmp_path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    for name in ("b.txt", "a.txt", "notes.md"):
        (shelf / name).write_text(TINY_TEXT)
    other = write(tmp_path, "z.txt", TINY_TEXT.encode())
    assert resolve_inputs(shelf) == [shelf / "a.txt", shelf / "b.txt"]
    assert resolve_inputs(str(shelf / "*.txt")) == [shelf / "a.txt", shelf / "b.txt"]
    assert resolve_inputs([other, shelf, shelf / "a.txt"]) == [
        other,
        shelf / "a.txt",
        shelf / "b.txt",
    ]
    with pytest.raises(CorpusError, match="matches no files"):
        resolve_inputs(str(tmp_path / "*.epub"))
    with pytest.raises(CorpusError, match="no such file, directory or catalogue book"):
        resolve_inputs("no-such-book-anywhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .txt files"):
        resolve_inputs(tmp_path / "empty")


# --- splits ----------------------------------------------------------------------------------


def test_split_regions_are_contiguous_tails_that_never_overlap():
    assert split_regions(1000, SplitConfig(0.1, 0.05)) == (850, 950)
    assert split_regions(1000, SplitConfig(0.1, 0.05, val_file="v.txt")) == (950, 950)
    assert split_regions(1000, SplitConfig(0.0, 0.0)) == (1000, 1000)
    with pytest.raises(ConfigError):
        SplitConfig(0.6, 0.5)
    with pytest.raises(ConfigError, match="both"):
        SplitConfig(val_file="x.txt", test_file="x.txt")


def _train(runner: CliRunner, *args: str):
    return runner.invoke(
        cli,
        [
            "train",
            *args,
            "--max-steps",
            "2",
            *TINY_MODEL_ARGS,
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--device",
            "cpu",
        ],
    )


@pytest.mark.slow
def test_train_takes_several_books_with_per_book_splits_and_a_test_score(tmp_path):
    a = write(tmp_path, "a.txt", ("alpha " * 200 + "\n").encode())
    b = write(tmp_path, "b.txt", "beta “quoted” ".encode("cp1252") * 150)
    out = tmp_path / "ck"
    result = _train(
        CliRunner(),
        str(a),
        str(b),
        "--val-fraction",
        "0.1",
        "--test-fraction",
        "0.1",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    data = config["data"]
    assert [Path(book["path"]).name for book in data["books"]] == ["a.txt", "b.txt"]
    assert [book["encoding"] for book in data["books"]] == ["utf-8", "cp1252"]
    for book in data["books"]:  # every book gives its own tail to validation and test
        assert book["val_characters"] > 0 and book["test_characters"] > 0
        parts = book["train_characters"] + book["val_characters"] + book["test_characters"]
        assert parts == book["characters"]
    assert data["val_tokens"] + data["test_tokens"] + data["train_tokens"] == data["characters"]
    assert config["test_perplexity"] > 1
    assert data["cache"]["hit"] is False
    again = _train(
        CliRunner(),
        str(a),
        str(b),
        "--val-fraction",
        "0.1",
        "--test-fraction",
        "0.1",
        "--out",
        str(out),
        "--overwrite",
    )
    assert again.exit_code == 0 and "cached" in again.output


@pytest.mark.slow
def test_train_with_explicit_validation_and_test_files(tmp_path):
    book = write(tmp_path, "book.txt", TINY_TEXT.encode())
    val = write(tmp_path, "val.txt", TINY_TEXT[:300].encode())
    test = write(tmp_path, "test.txt", TINY_TEXT[300:700].encode())
    out = tmp_path / "ck"
    result = _train(
        CliRunner(), str(book), "--val", str(val), "--test", str(test), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "config.json").read_text(encoding="utf-8"))["data"]
    assert data["train_tokens"] == len(TINY_TEXT)  # the whole book trains
    assert (data["val_tokens"], data["test_tokens"]) == (300, 400)
    assert Path(data["test_file"]["path"]).name == "test.txt"


def test_a_validation_file_equal_to_a_training_book_is_refused(tmp_path):
    book = write(tmp_path, "book.txt", TINY_TEXT.encode())
    copy = write(tmp_path, "copy.txt", TINY_TEXT.encode())
    result = _train(CliRunner(), str(book), "--val", str(copy))
    assert result.exit_code == 1
    assert "must not overlap" in result.output and "Traceback" not in result.output


def test_train_refuses_a_binary_file_in_one_line(tmp_path):
    archive = tmp_path / "book.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("book.txt", TINY_TEXT)
    result = _train(CliRunner(), str(archive))
    assert result.exit_code == 1
    assert "zip archive" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_reading_options_reach_the_checkpoint(tmp_path):
    text = PG_HEADER + "“Quoted” words, and more words to learn from.\n" * 40 + PG_FOOTER
    book = write(tmp_path, "pg.txt", text.encode("cp1252"))
    out = tmp_path / "ck"
    args = [str(book), "--encoding", "cp1250", "--keep-boilerplate", "--no-cache"]
    result = _train(CliRunner(), *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "config.json").read_text(encoding="utf-8"))["data"]
    assert data["encoding"] == "cp1250" and data["books"][0]["encoding"] == "cp1250"
    assert data["keep_boilerplate"] and data["boilerplate_removed"] == 0
    assert data["cache"] == {
        "hit": False,
        "key": data["cache"]["key"],
        "path": None,
        "tokenizer": {"name": "char", "options": {}, "origin": "built in"},
    }
    assert data["characters"] == len(text)


def test_a_book_too_short_to_train_on_fails_in_one_line(tmp_path):
    short = write(tmp_path, "short.txt", b"just a few words\n")
    result = _train(CliRunner(), str(short), "--batch-size", "4", "--seq-len", "10")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "too few for one batch" in result.output
