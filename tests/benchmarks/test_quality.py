"""The quality benchmarks run end to end on tiny slices (--quick), and the report collects
their results. Nothing about the figures themselves is asserted."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from benchmarks import ptb_zaremba, report, shakespeare_5min, timemachine_textbook, wikitext2
from tests.conftest import TINY_TEXT, shared_corpus

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
    # lr 1 and clip 5 on the loss summed over the 20 steps = lr 20 and clip 0.25 on the mean
    assert (t.batch_size, t.seq_len, t.epochs, t.lr, t.clip) == (20, 20, 13, 20.0, 0.25)
    assert (t.optimizer, t.momentum, t.schedule, t.decay_factor, t.decay_start) == (
        "sgd", 0.0, "step", 0.5, 4,
    )  # fmt: skip
    assert small.model["hidden_size"] == 200 and small.model["num_layers"] == 2
    assert small.model["dropout"] == 0.0 and small.model["init_range"] == 0.1


@pytest.mark.parametrize("scale", [1.0, 100.0])  # the clip inactive, then active
def test_summed_loss_at_lr_1_clip_5_makes_the_update_of_the_zaremba_recipe(scale):
    """The paper's update (loss summed over the unrolled steps, lr 1, clip 5) and the
    recipe's (mean loss, lr and clip converted) move every weight the same way."""
    t = ptb_zaremba.RECIPES["zaremba-small"].training
    torch.manual_seed(0)
    paper = nn.LSTM(3, 4)
    recipe = copy.deepcopy(paper)
    x = torch.randn(t.seq_len, 2, 3)  # (steps, batch, features)

    def sgd_step(model: nn.Module, summed: bool, lr: float, clip: float) -> float:
        out, _ = model(x)
        per_step = scale * out.pow(2).mean(dim=(1, 2))  # each step's loss, batch-averaged
        (per_step.sum() if summed else per_step.mean()).backward()
        norm = float(nn.utils.clip_grad_norm_(model.parameters(), clip))
        with torch.no_grad():
            for w in model.parameters():
                w -= lr * w.grad
        return norm

    norm = sgd_step(paper, summed=True, lr=1.0, clip=5.0)
    sgd_step(recipe, summed=False, lr=t.lr, clip=t.clip)
    assert (norm > 5.0) == (scale > 1.0)
    for a, b in zip(paper.parameters(), recipe.parameters()):
        torch.testing.assert_close(a, b)


def test_wikitext2_max_steps_measures_speed_only(tmp_path):
    shared_corpus("wikitext-2/train.txt")
    out = tmp_path / "speed.json"
    invoke(wikitext2.main, "--quick", "--max-steps", "3", "--recipe", "untied-full",
           "--device", "cpu", "--out", out)  # fmt: skip
    run = json.loads(out.read_text())["runs"]["untied-full"]
    assert run["steps"] == 3 and run["max_steps"] == 3 and run["stopped_by"] == "max_steps"
    assert run["tokens_per_s"] > 0 and run["validation_curve"][-1]["step"] == 3


def test_wikitext2_quick_compares_full_and_adaptive(tmp_path):
    shared_corpus("wikitext-2/train.txt")
    out = tmp_path / "wikitext2.json"
    output = invoke(wikitext2.main, "--quick", "--device", "cpu", "--out", out)
    assert "adaptive vs full softmax" in output
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"untied-full", "tied-full", "untied-adaptive"}
    assert runs["untied-adaptive"]["settings"]["model"]["softmax"] == "adaptive"


@pytest.mark.parametrize(
    "script, corpus, recipe, kind",
    [(ptb_zaremba, "PTB", "zaremba-small", "ptb"), (wikitext2, "WIKITEXT", "untied-full", "wt2")],
)
def test_a_full_runs_checkpoints_go_beside_its_results_file(
    script, corpus, recipe, kind, tmp_path, monkeypatch
):
    """Not under benchmarks/results whatever --out says: a full run (no --quick) of a tiny
    recipe on a tiny corpus, the real results folder swapped for one that must stay empty."""
    data = tmp_path / "data"
    data.mkdir()
    lines = TINY_TEXT.splitlines(keepends=True)
    for shift, name in enumerate(script.QUICK_LINES):  # train, valid, test: each its own text
        (data / name).write_text("".join(lines[shift:] + lines[:shift]) * 2, encoding="utf-8")
    monkeypatch.setattr(script, corpus, data)
    monkeypatch.setattr(script, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setitem(script.RECIPES, recipe, script.RECIPES[recipe].quick(epochs=1))
    out = tmp_path / "elsewhere" / "results.json"
    invoke(script.main, "--recipe", recipe, "--device", "cpu", "--out", out)
    checkpoint = tmp_path / "elsewhere" / "checkpoints" / kind / recipe
    assert (checkpoint / "config.json").is_file()
    assert json.loads(out.read_text())["runs"][recipe]["checkpoint"] == str(checkpoint)
    assert not (tmp_path / "results").exists()


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
    invoke(shakespeare_5min.main, "--quick", "--name", "tiny", "--threads", "1", "--out", out,
           "--", "--lr", "3e-3")  # fmt: skip
    run = json.loads(out.read_text())["runs"]["tiny"]
    assert run["threads"] == 1 and "--threads 1" in run["command"]
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
    # By default a file of its own, made with its markers; never the hand-written page.
    assert report.DOC.name == "benchmarks-tables.md"
    fresh = tmp_path / "tables.md"
    invoke(report.main, "--write", "--results", tmp_path, "--doc", fresh)
    assert fresh.read_text().startswith("# Benchmark tables")
    assert "The Time Machine" in fresh.read_text()
    refused = tmp_path / "page.md"
    refused.write_text("# Hand-written\n")
    result = CliRunner().invoke(report.main, ["--write", "--doc", str(refused)])
    assert result.exit_code == 1 and "no <!-- results:begin -->" in result.output
    assert refused.read_text() == "# Hand-written\n"


def test_report_plots_the_validation_curves_of_the_word_level_runs(tmp_path):
    curve = [{"epoch": e, "step": 10 * e, "elapsed_s": None, "val_perplexity": 300 / e}
             for e in (1, 2, 3)]  # fmt: skip
    (tmp_path / "wikitext2.json").write_text(
        json.dumps({"runs": {"untied-full": {"validation_curve": curve}}})
    )
    picture = report.plot_word_curves(tmp_path, tmp_path / "curves.png")
    assert picture is not None and picture.read_bytes()[:4] == b"\x89PNG"
    assert report.plot_word_curves(tmp_path / "empty", tmp_path / "none.png") is None


def test_a_quick_run_never_replaces_a_full_runs_results(tmp_path, monkeypatch):
    from benchmarks import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    full = common.write_results(tmp_path / "bench.json", {"quick": False, "rows": [1]})
    quick = common.write_results(tmp_path / "bench.json", {"quick": True, "rows": [2]})
    assert quick == tmp_path / "bench.quick.json" and full == tmp_path / "bench.json"
    assert json.loads(full.read_text())["rows"] == [1]  # the full run's figures stay
    elsewhere = common.write_results(tmp_path / "sub" / "x.json", {"quick": True})
    assert elsewhere.name == "x.json"  # an --out of the user's own is taken as given


def test_a_benchmark_without_its_device_says_so_in_one_line(tmp_path):
    out = str(tmp_path / "t.json")
    result = CliRunner().invoke(
        timemachine_textbook.main, ["--quick", "--device", "cuda", "--out", out]
    )
    if result.exit_code == 0:
        pytest.skip("this machine has a CUDA GPU")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: --device cuda was asked for but no CUDA GPU")


def test_a_bad_list_of_names_is_a_usage_error():
    from benchmarks import train_overhead

    result = CliRunner().invoke(train_overhead.main, ["--configs", "a,x"])
    assert result.exit_code == 2
    assert "'x': give comma-separated names of a, b, c, d" in result.output
    result = CliRunner().invoke(train_overhead.main, ["--threads", "1,0"])
    assert result.exit_code == 2 and "'0': give whole numbers from 1" in result.output
