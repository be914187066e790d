"""The classifier benchmark: its word naive Bayes, the toy set read as literals, a quick run."""

import json

import pytest

from benchmarks.classifiers import WordNaiveBayes, read_toy
from charlm.corpus import ExampleSet
from tests.benchmarks import run_benchmark
from tests.conftest import SHARED_CORPORA


def test_word_naive_bayes_learns_which_words_go_with_a_label():
    train = ExampleSet(
        ["good film", "a good one", "bad film", "so bad"], ["pos", "pos", "neg", "neg"]
    )
    model = WordNaiveBayes(train)
    assert model.predict("good") == "pos" and model.predict("bad , bad") == "neg"
    found = model.measure(ExampleSet(["good", "bad", "good bad good"], ["pos", "neg", "neg"]))
    assert found["accuracy"] == pytest.approx(2 / 3)
    assert found["macro_f1"] == pytest.approx(2 / 3)  # "good bad good" taken for pos


def test_character_naive_bayes_reads_text_without_spaces():
    train = ExampleSet(["很好看", "好书", "很差", "太差了"], ["pos", "pos", "neg", "neg"])
    model = WordNaiveBayes(train, chars=True)
    assert model.grams("很好") == ["很", "好", "很 好"]
    assert model.predict("好看") == "pos" and model.predict("差") == "neg"


def test_the_toy_set_is_read_without_running_it():
    if not (SHARED_CORPORA / "sentiment" / "toy").is_dir():
        pytest.skip(f"needs the shared corpora: {SHARED_CORPORA} is absent")
    train, test = read_toy()
    assert (len(train), len(test)) == (58, 20)
    assert dict(test.pairs())["i am not good"] == "neg"


def test_quick_classifier_benchmark_measures_every_set(tmp_path):
    if not (SHARED_CORPORA / "sentiment").is_dir():
        pytest.skip(f"needs the shared corpora: {SHARED_CORPORA} is absent")
    out = tmp_path / "classifiers.json"
    result = run_benchmark(
        "benchmarks.classifiers", "--quick", "--max-time", "5s", "--lm-time", "5s",
        "--labelled-lm-time", "5s", "--folds", "1", "--char-models", "bi-pretrained,uni-scratch",
        "--out", str(out), timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert {(r["set"], r["model"]) for r in rows} >= {
        ("toy", "bidirectional"), ("names", "init-from LM, unidirectional"),
        ("names", "init-from both LMs, bidirectional"),
        ("mr", "unidirectional"), ("mr", "NB word 1+2-grams"),
        ("names", "unidirectional, from scratch"),
        ("names", "labelled LM (Bayes' rule)"),
        ("names", "bidirectional, pretrained + labelled LM (--ensemble)"),
        ("zh-books", "bidirectional, pretrained"),
        ("zh-books", "NB char 1+2-grams"),
    }  # fmt: skip
    assert all(0 <= r["accuracy"] <= 1 for r in rows if "accuracy" in r)
    # A pretrained classifier keeps its labelled LM: scored with it, and alone as well.
    found = {(r["set"], r["model"]): r for r in rows}
    assert 0 <= found["names", "bidirectional, pretrained"]["alone"]["accuracy"] <= 1
    assert "alone" not in found["names", "unidirectional, from scratch"]


def test_quick_classifier_step_benchmark_times_every_way(tmp_path):
    if not (SHARED_CORPORA / "sentiment" / "mr").is_dir():
        pytest.skip(f"needs the shared corpora: {SHARED_CORPORA} is absent")
    out = tmp_path / "classifier_step.json"
    result = run_benchmark("benchmarks.classifier_step", "--quick", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    found = json.loads(out.read_text(encoding="utf-8"))
    assert len(found["tokens_per_s"]) == 4 and all(r > 0 for r in found["tokens_per_s"].values())
    assert set(found["ratios"]) == {"padded / packed", "flushed / not"}
