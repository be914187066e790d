"""The quality benchmarks run end to end on tiny slices (--quick), and the report collects
their results. Nothing about the figures themselves is asserted."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from benchmarks import ptb_zaremba, report, shakespeare_5min, timemachine_textbook, wikitext2
from tests.conftest import shared_corpus

pytestmark = pytest.mark.slow


def invoke(command, *args) -> str:
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_ptb_quick_runs_both_recipes(tmp_path):
    shared_corpus("ptb/ptb.train.txt")
    out = tmp_path / "ptb_zaremba.json"
    output = invoke(ptb_zaremba.main, "--quick", "--device", "cpu", "--out", out)
    assert "zaremba-small" in output and "charlm-word" in output
    runs = json.loads(out.read_text())["runs"]
    small = runs["zaremba-small"]
    assert small["settings"]["training"]["schedule"] == "step"
    assert small["settings"]["model"]["init_range"] == 0.1
    assert all(math.isfinite(r["test_perplexity"]) for r in runs.values())


def test_ptb_recipe_is_the_published_configuration():
    small = ptb_zaremba.RECIPES["zaremba-small"]
    t = small.training
    assert (t.batch_size, t.seq_len, t.epochs, t.lr, t.clip) == (20, 20, 13, 1.0, 5.0)
    assert (t.optimizer, t.momentum, t.schedule, t.decay_factor, t.decay_start) == (
        "sgd", 0.0, "step", 0.5, 4,
    )  # fmt: skip
    assert small.model["hidden_size"] == 200 and small.model["num_layers"] == 2
    assert small.model["dropout"] == 0.0 and small.model["init_range"] == 0.1


def test_wikitext2_quick_compares_full_and_adaptive(tmp_path):
    shared_corpus("wikitext-2/train.txt")
    out = tmp_path / "wikitext2.json"
    output = invoke(wikitext2.main, "--quick", "--device", "cpu", "--out", out)
    assert "adaptive vs full softmax" in output
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"untied-full", "tied-full", "untied-adaptive"}
    assert runs["untied-adaptive"]["settings"]["model"]["softmax"] == "adaptive"


def test_timemachine_quick_runs_both_iterators(tmp_path):
    shared_corpus("timemachine/timemachine.txt")
    out = tmp_path / "timemachine_textbook.json"
    invoke(timemachine_textbook.main, "--quick", "--device", "cpu", "--out", out)
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"sequential", "random"}
    assert set(runs["random"]["vocabulary"]) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_textbook_preprocessing_keeps_lower_case_letters_and_single_spaces():
    text = timemachine_textbook.textbook_text("The Time-Machine,\n\nby H. G. Wells [1898]", 30)
    assert text == "the time machine by h g wells "


def test_shakespeare_quick_scores_the_whole_held_out_text(tmp_path):
    shared_corpus("tinyshakespeare/input.txt")
    out = tmp_path / "shakespeare_5min.json"
    invoke(shakespeare_5min.main, "--quick", "--name", "tiny", "--out", out, "--", "--lr", "3e-3")
    run = json.loads(out.read_text())["runs"]["tiny"]
    assert run["held_out_characters"] == 2_000  # the last 10% of the 20,000-character slice
    assert run["nats_per_char"] == pytest.approx(run["bits_per_char"] * math.log(2))
    assert run["training"]["lr"] == 3e-3 and run["training"]["max_time"] == 3.0
    assert run["curve"] and "--lr 3e-3" in run["command"]


def test_nanogpt_split_holds_out_111540_characters():
    text = "x" * 1_115_394  # the length of input.txt
    train, held_out = shakespeare_5min.nanogpt_split(text)
    assert (len(train), len(held_out)) == (1_003_854, 111_540)


def test_report_collects_the_results_and_marks_the_rest_not_yet_run(tmp_path):
    shared_corpus("timemachine/timemachine.txt")
    invoke(timemachine_textbook.main, "--quick", "--device", "cpu", "--out",
           tmp_path / "timemachine_textbook.json")  # fmt: skip
    text = report.render(tmp_path)
    assert "| zaremba-small | not yet run |" in text
    assert "| sequential | not yet run |" not in text
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# B\n\nbefore\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    invoke(report.main, "--write", "--results", tmp_path, "--doc", doc)
    written = doc.read_text()
    assert "old" not in written and "before" in written and "after" in written
    assert "The Time Machine" in written
