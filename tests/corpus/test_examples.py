"""Labelled examples: files, directories and tables; duplicates; splits by distinct text."""

from __future__ import annotations

import csv
import json

import pytest

from charlm.corpus import read_examples, split_examples
from charlm.corpus.examples import ExampleSet, file_labels
from charlm.errors import ConfigError, CorpusError
from tests.conftest import SHARED_CORPORA


def write(path, text: str, encoding: str = "utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def label_files(tmp_path):
    write(tmp_path / "names" / "Czech.txt", "Novak\nDvorak\n\n  Svoboda  \nNovak\n")
    write(tmp_path / "names" / "Irish.txt", "O'Brien\r\nMurphy\r\nNovak\r\n")  # CRLF
    return tmp_path / "names"


def test_each_file_is_a_label_and_each_nonempty_line_an_example(label_files):
    found = read_examples(label_files, labels="files", examples="lines")
    assert found.pairs() == [
        ("Novak", "Czech"),
        ("Dvorak", "Czech"),
        ("Svoboda", "Czech"),  # surrounding spaces removed
        ("Novak", "Czech"),
        ("O'Brien", "Irish"),  # CRLF read as line breaks
        ("Murphy", "Irish"),
        ("Novak", "Irish"),
    ]
    assert found.label_names == ["Czech", "Irish"]
    assert found.label_counts() == {"Czech": 4, "Irish": 3}
    assert {f["line_endings"] for f in found.files} == {"lf", "crlf"}


def test_files_are_decoded_like_books(tmp_path):
    write(tmp_path / "French.txt", "Béranger\nDésiré\n", encoding="cp1252")
    found = read_examples(tmp_path / "French.txt", labels="files")
    assert found.texts == ["Béranger", "Désiré"]
    assert found.files[0]["encoding"] == "cp1252"


def test_without_labels_the_examples_have_none(label_files):
    found = read_examples(label_files, examples="lines")
    assert found.labels is None and found.label_names == [] and len(found) == 7


def test_directories_as_labels_and_files_as_examples(tmp_path):
    write(tmp_path / "reviews" / "pos" / "1.txt", "Loved it.\nWould read again.\n")
    write(tmp_path / "reviews" / "pos" / "2.txt", "Wonderful.")
    write(tmp_path / "reviews" / "neg" / "a.txt", "Dull.")
    found = read_examples(tmp_path / "reviews", labels="dirs", examples="files")
    assert found.pairs() == [
        ("Dull.", "neg"),
        ("Loved it.\nWould read again.", "pos"),
        ("Wonderful.", "pos"),
    ]
    lines = read_examples(tmp_path / "reviews", labels="dirs", examples="lines")
    assert len(lines) == 4 and lines.unit == "lines"


@pytest.mark.parametrize(
    "name, content",
    [
        ("data.tsv", 'text\tlabel\nNovak\tCzech\nsay "hi\tIrish\n'),
        ("data.csv", 'label,text\nCzech,Novak\nIrish,"say ""hi"\n'),
        (
            "data.jsonl",
            json.dumps({"text": "Novak", "label": "Czech"})
            + "\n\n"
            + json.dumps({"label": "Irish", "text": 'say "hi', "id": 3})
            + "\n",
        ),
    ],
)
def test_tables_name_their_text_and_label_columns(tmp_path, name, content):
    found = read_examples(write(tmp_path / name, content), labels="table")
    assert found.pairs() == [("Novak", "Czech"), ('say "hi', "Irish")]
    assert found.unit == "rows"


def test_table_columns_can_be_renamed_and_a_missing_one_is_named(tmp_path):
    table = write(tmp_path / "t.csv", "sentence,polarity\ngood,pos\n")
    found = read_examples(table, labels="table", text_column="sentence", label_column="polarity")
    assert found.pairs() == [("good", "pos")]
    with pytest.raises(CorpusError, match=r"no column 'text'.*'sentence', 'polarity'"):
        read_examples(table, labels="table")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("t.csv", "text,label\nhello,\n", "row 2: the 'label' column is empty"),
        ("t.jsonl", '{"text": "a", "label": "x"}\nnot json\n', "line 2: not a JSON object"),
        ("t.jsonl", "[1, 2]\n", "line 1: not a JSON object"),
        ("t.jsonl", '{"text": ["a"], "label": "x"}\n', "'text' column holds \\['a'\\]"),
        ("t.jsonl", '{"text": "a", "label": 1.0}\n', "'label' column holds 1.0; write it as"),
        ("t.jsonl", '{"text": "a", "label": true}\n', "'label' column holds True"),
        ("t.txt", "text,label\n", "reads .tsv, .csv and .jsonl"),
        # A tab in a text, or a row short of its label, would shift the columns unseen.
        ("t.tsv", "text\tlabel\nfoo\tbar\tpos\n", "row 2 \\(line 2\\) has 3 fields, the header 2"),
        ("t.tsv", "text\tlabel\nfoo\tpos\nbar\n", "row 3 \\(line 3\\) has 1 field, the header 2"),
        ("t.csv", "text,label\nfoo, bar,pos\n", "row 2 \\(line 2\\) has 3 fields"),
        ("t.csv", 'text,label\n"foo,pos\nbar,neg\n', "row 2 .*a quote opened and never closed"),
        # A header that names a column twice would read one of the two unseen.
        ("t.csv", "text,label,label\ngood,pos,web\n", "t.csv: the header names the column 'label'"),
        ("t.tsv", "text\ttext\tlabel\na\tb\tpos\n", "t.tsv: the header names the column 'text'"),
        ("t.jsonl", '{"text": "a", "label": "x", "label": "y"}\n', "line 1: the object names 'l"),
    ],
)
def test_bad_tables_are_refused_with_where(tmp_path, name, content, message):
    with pytest.raises(CorpusError, match=message):
        read_examples(write(tmp_path / name, content), labels="table")


@pytest.mark.parametrize(
    "name, content",
    [
        ("t.tsv", "text\tlabel\ngood film\tpos\nbad film\tneg\n\tneutral\n \tneutral\n"),
        ("t.csv", 'text,label\ngood film,pos\n"",neutral\nbad film,neg\n  ,neutral\n'),
        (
            "t.jsonl",
            '{"text": "good film", "label": "pos"}\n{"text": null, "label": "neutral"}\n'
            '{"text": "bad film", "label": "neg"}\n{"text": " ", "label": "neutral"}\n',
        ),
    ],
)
def test_rows_with_an_empty_text_are_skipped_counted_and_a_vanished_label_named(
    tmp_path, name, content
):
    found = read_examples(write(tmp_path / name, content), labels="table")
    assert sorted(found.pairs()) == [("bad film", "neg"), ("good film", "pos")]
    assert found.skipped == 2 and found.empty_labels == ["neutral"]
    assert found.describe_skipped() == (
        "2 rows with an empty text skipped; the label neutral has no example: all its texts "
        "are empty"
    )
    # What reading left out stays told after deduplication and splits.
    assert found.deduplicated().skipped == 2 and found.subset([0]).empty_labels == ["neutral"]


def test_a_label_keeping_some_examples_is_not_named_and_nothing_skipped_says_nothing(tmp_path):
    table = write(tmp_path / "t.tsv", "text\tlabel\ngood\tpos\n\tpos\nbad\tneg\n")
    found = read_examples(table, labels="table")
    assert found.skipped == 1 and found.empty_labels == []
    assert found.describe_skipped() == "1 row with an empty text skipped"
    full = read_examples(write(tmp_path / "u.tsv", "text\tlabel\na\tpos\n"), labels="table")
    assert full.skipped == 0 and full.describe_skipped() is None


def test_a_label_directory_is_read_with_its_subdirectories_in_path_order(tmp_path):
    reviews = tmp_path / "reviews"
    for i in range(1, 3):
        write(reviews / "pos" / f"a{i}.txt", f"pos a{i}")
        write(reviews / "neg" / f"a{i}.txt", f"neg a{i}")
        write(reviews / "pos" / "2023" / f"b{i}.txt", f"pos 2023 b{i}")
    write(reviews / "pos" / "2023" / "deeper" / "c.txt", "pos deeper c")
    write(reviews / "pos" / ".hidden" / "h.txt", "hidden folder")
    write(reviews / "pos" / "2023" / ".h.txt", "hidden file")
    found = read_examples(reviews, labels="dirs", examples="files")
    assert found.pairs() == [
        ("neg a1", "neg"),
        ("neg a2", "neg"),
        ("pos 2023 b1", "pos"),
        ("pos 2023 b2", "pos"),
        ("pos deeper c", "pos"),
        ("pos a1", "pos"),
        ("pos a2", "pos"),
    ]
    write(reviews / "empty" / ".only-hidden.txt", "x")
    with pytest.raises(CorpusError, match="empty holds no files, nor do its subdirectories"):
        read_examples(reviews, labels="dirs")


@pytest.mark.parametrize("name, quote", [("t.csv", '"'), ("t.tsv", "")])
def test_a_field_past_the_csv_modules_limit_is_read_and_the_limit_put_back(tmp_path, name, quote):
    before = csv.field_size_limit()
    long = "x" * 140_000  # past the csv module's default limit, 131,072
    separator = "," if name.endswith("csv") else "\t"
    content = f"text{separator}label\n{quote}{long}{quote}{separator}pos\nshort{separator}neg\n"
    found = read_examples(write(tmp_path / name, content), labels="table")
    assert found.pairs() == [(long, "pos"), ("short", "neg")]
    assert csv.field_size_limit() == before


def test_formats_that_cannot_be_read_are_refused():
    with pytest.raises(ConfigError, match="rows"):
        read_examples("x.tsv", labels="table", examples="files")
    with pytest.raises(ConfigError, match="unknown --labels"):
        read_examples("x", labels="columns")


def test_labels_from_file_names_keep_the_extension_when_stems_collide(tmp_path):
    paths = [tmp_path / "rt-polarity.pos", tmp_path / "rt-polarity.neg"]
    assert file_labels(paths) == ["pos", "neg"]  # the extension tells them apart
    assert file_labels([tmp_path / "Czech.txt", tmp_path / "Irish.txt"]) == ["Czech", "Irish"]


def test_duplicates_are_counted_per_label_and_across_labels(label_files):
    found = read_examples(label_files, labels="files")
    duplicates = found.duplicates()
    assert duplicates.repeated == 1  # the second Novak under Czech
    assert duplicates.per_label["Czech"] == (4, 3)
    assert duplicates.texts_with_several_labels == 1  # Novak is Czech and Irish
    assert "1 examples repeat an earlier one: Czech 4 (3 distinct)" in duplicates.describe()
    deduplicated = found.deduplicated()
    assert deduplicated.pairs() == list(dict.fromkeys(found.pairs()))
    assert deduplicated.duplicates().repeated == 0


def labelled(counts: dict[str, int], copies: int = 1) -> ExampleSet:
    texts, labels = [], []
    for label, count in counts.items():
        for i in range(count):
            texts += [f"{label}{i}"] * copies
            labels += [label] * copies
    return ExampleSet(texts, labels)


def test_splits_cut_each_label_by_distinct_text_and_keep_copies_together():
    examples = labelled({"a": 100, "b": 20, "c": 1}, copies=3)
    train, val, test = split_examples(examples, 0.1, 0.2, seed=0)
    for part in (train, val, test):
        for other in (train, val, test):
            if part is not other:
                assert not set(part.texts) & set(other.texts)
    assert len(train) + len(val) + len(test) == len(examples)
    assert {label: n // 3 for label, n in val.label_counts().items()} == {"a": 10, "b": 2}
    assert {label: n // 3 for label, n in test.label_counts().items()} == {"a": 20, "b": 4}
    assert train.label_counts()["c"] == 3  # a label's only text stays for training


def test_a_text_under_several_labels_lands_in_one_split():
    examples = ExampleSet(["x", "x", "y", "z", "w"], ["a", "b", "a", "b", "b"])
    for seed in range(20):
        parts = split_examples(examples, 0.4, 0.0, seed)
        assert sum("x" in part.texts for part in parts) == 1


def test_a_label_whose_texts_another_label_placed_keeps_one_to_train_on():
    texts = [f"word{i}" for i in range(10)]
    examples = ExampleSet([*texts, "word0", "word1"], ["a"] * 10 + ["b", "b"])
    for seed in range(20):
        train, _, _ = split_examples(examples, 0.3, 0.0, seed)
        assert set(train.label_counts()) == {"a", "b"}, seed


def test_splits_are_fixed_by_the_seed():
    examples = labelled({"a": 50, "b": 50})
    assert (
        split_examples(examples, 0.1, 0.1, 3)[1].texts
        == split_examples(examples, 0.1, 0.1, 3)[1].texts
    )
    assert (
        split_examples(examples, 0.1, 0.1, 3)[1].texts
        != split_examples(examples, 0.1, 0.1, 4)[1].texts
    )


@pytest.mark.corpus
def test_the_real_names_set():
    names = SHARED_CORPORA / "names"
    if not names.is_dir():
        pytest.skip(f"needs the shared corpora: {names} is absent")
    found = read_examples(names, labels="files", examples="lines")
    assert len(found) == 20_074 and len(found.label_names) == 18
    assert found.duplicates().per_label["Arabic"] == (2000, 108)
    unique = found.deduplicated()
    assert len(unique) == 18_015
    train, val, test = split_examples(unique, 0.1, 0.1, seed=0)
    assert not set(train.texts) & set(test.texts) and not set(val.texts) & set(test.texts)
    assert 1700 < len(test) < 1900 and set(test.label_names) == set(found.label_names)
