"""The labelled-text benchmarks: the n-gram baseline, and both scripts in their quick modes."""

import json
import math
from pathlib import Path

import pytest

from benchmarks.ngram import END, START, CharNgram, NaiveBayes
from tests.benchmarks import run_benchmark
from tests.conftest import SHARED_CORPORA


def test_the_ngram_model_is_a_distribution_over_the_next_character():
    model = CharNgram(3).fit(["abba", "abab", "baa"])
    for context in (START * 2, START + "a", "ab", "zz"):
        # Every character seen (the end included), and one share for any character never seen.
        total = sum(model.prob(context, c) for c in model.vocabulary) + model.prob(context, "?")
        assert total == pytest.approx(1)
    assert END in model.vocabulary
    assert model.log_prob("abba") > model.log_prob("bbbb")
    assert math.isfinite(model.log_prob("qqq"))  # unseen characters keep a small probability


def test_naive_bayes_tells_apart_two_alphabets():
    model = NaiveBayes(["ab", "aab", "bab", "xy", "xyy", "yx"], ["ab"] * 3 + ["xy"] * 3)
    assert model.predict("abba") == "ab" and model.predict("yyx") == "xy"


def _quick(module: str, out: Path, *extra: str) -> dict:
    if not (SHARED_CORPORA / "names").is_dir():
        pytest.skip(f"needs the shared corpora: {SHARED_CORPORA} is absent")
    result = run_benchmark(
        module, "--quick", "--threads", "1", "--out", str(out), *extra, timeout=1200
    )
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text(encoding="utf-8"))


def test_quick_names_benchmark_measures_every_run(tmp_path):
    out = tmp_path / "names.json"
    results = _quick("benchmarks.names", out, "--temperatures", "0.8,1", "--guidance", "0,2")
    assert set(results["runs"]) == {"conditional", "token", "unlabelled", "cpu-3m"}
    assert 0 < results["baseline"]["accuracy"] <= 1
    conditional = results["runs"]["conditional"]
    assert "judged_macro" in conditional["generation"]
    sweep = conditional["generation_by_temperature"]
    settings = [(0.8, 0.0), (0.8, 2.0), (1.0, 0.0), (1.0, 2.0)]
    assert [(g["temperature"], g["guidance"]) for g in sweep] == settings
    assert sweep[0]["novel"] == conditional["generation"]["novel"]
    assert all(0 < g["distinct"] <= 1 for g in sweep)
    assert results["prior_bound"] > 0
    parts = results["conditioning_parts"]
    total = parts["unlabelled_vs_mixture"] + parts["mixture_vs_given_label"]
    assert total == pytest.approx(results["conditioning_gain"])
    # What the label saves a model that already weighs every label by its posterior is at
    # most the label's own information.
    assert parts["mixture_vs_given_label"] <= results["prior_bound"] + 1e-9


def test_quick_which_book_benchmark_scores_both_ways(tmp_path):
    # One model of both books first, then each book's fine-tuned from it, two at once.
    out, work = tmp_path / "which_book.json", tmp_path / "work"
    results = _quick(
        "benchmarks.which_book", out, "--shared-minutes", "0.05", "--jobs", "2",
        "--model-options", "--embed 6", "--book-options", "--ngram 3", "--work", str(work),
    )  # fmt: skip
    assert results["passages"] == 10 and len(results["books"]) == 2
    # The new model's options shaped the shared model, and through it each book's.
    for model in ("shared", "alice"):
        config = json.loads((work / model / "config.json").read_text(encoding="utf-8"))
        assert config["model"]["embed_size"] == 6
    assert results["shared_wall_seconds"] > 0 and results["jobs"] == 2
    assert results["shared_threads"] == 2  # the shared model alone has both jobs' threads
    assert 0 <= results["lm_accuracy"] <= 1 and 0 <= results["ngram_accuracy"] <= 1
    wide = results["every_stretch"]  # every 200 characters of the two tails, both ways
    assert wide["passages"] == sum(book["passages"] for book in wide["books"].values()) > 10
    assert 0 <= wide["lm_balanced_accuracy"] <= 1 and 0 <= wide["ngram_accuracy"] <= 1
    # Each book's model mixes in a 3-gram of its book, and is also scored without it.
    assert all(0 < book["ngram_weight"] < 1 for book in results["books"].values())
    alone = results["network_alone"]
    assert 0 <= alone["lm_accuracy"] <= 1
    assert alone["every_stretch"]["passages"] == wide["passages"]
