"""`charlm plot`: curves of several runs in one PNG and a summary table."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.training.plotting import load_run, perplexity_figure

pytest.importorskip("matplotlib")


def write_log(directory, records):
    directory.mkdir(parents=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (directory / "metrics.jsonl").write_text(lines, encoding="utf-8")


def fake_run(directory, scale):
    records = []
    for step in range(10, 101, 10):
        loss = scale / step**0.5
        records.append(
            {
                "step": step,
                "epoch": 1,
                "lr": 0.002,
                "train_loss": loss,
                "train_perplexity": 2.718**loss,
                "grad_norm": 1.0,
                "tokens_per_s": 1000.0 * scale,
                "elapsed_s": step / 10,
            }
        )
        if step % 50 == 0:
            records.append(
                {
                    "step": step,
                    "epoch": 1,
                    "elapsed_s": step / 10,
                    "val_loss": loss * 1.1,
                    "val_perplexity": 2.718 ** (loss * 1.1),
                    "val_bpc": loss * 1.1 / 0.693,
                }
            )
    write_log(directory, records)


def test_plot_draws_several_runs_and_prints_a_summary(tmp_path):
    fake_run(tmp_path / "small", 10.0)
    fake_run(tmp_path / "large", 8.0)
    png = tmp_path / "out" / "curves.png"
    result = CliRunner().invoke(
        cli,
        [
            "plot",
            str(tmp_path / "small"),
            str(tmp_path / "large"),
            "--out",
            str(png),
            "--x",
            "time",
        ],
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(png).shape[:2] == (600, 960)  # 8 x 5 inches at 120 dpi
    assert f"wrote {png}" in result.stderr and "wrote" not in result.stdout
    lines = result.stdout.splitlines()  # the table is on stdout, so `> file` keeps it
    small = next(line for line in lines if line.strip().startswith("small"))
    best = load_run(tmp_path / "small").summary()["best_val_perplexity"]
    assert f"{best:.3f}" in small and "100" in small
    assert any(line.strip().startswith("large") for line in lines)


def test_a_diverged_run_is_summed_up_in_whole_numbers(tmp_path):
    fake_run(tmp_path / "diverged", 300.0)  # validation perplexity 2.1e14 at best
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "diverged")])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "diverged" in line)
    best = load_run(tmp_path / "diverged").summary()["best_val_perplexity"]
    assert f"{best:.3e}" in row and "…" not in row  # whole, not cut to fit the table


def test_a_classifier_run_is_summed_up_by_its_accuracy(tmp_path):
    # The loss goes on falling after the most accurate evaluation, which the run kept.
    evals = [(10, 1.2, 0.60), (20, 1.0, 0.71), (30, 0.9, 0.69)]
    write_log(tmp_path / "clf", [
        {"step": step, "val_loss": loss, "val_perplexity": 2.718**loss, "val_bpc": loss,
         "val_accuracy": accuracy, "elapsed_s": step}
        for step, loss, accuracy in evals
    ])  # fmt: skip
    run = load_run(tmp_path / "clf")
    summary = run.summary()
    assert summary["best_step"] == 20 and summary["best_val_accuracy"] == 0.71
    assert summary["val_accuracy"] == 0.69 and summary["val_bpc"] is None
    result = CliRunner().invoke(
        cli, ["plot", str(tmp_path / "clf"), "--out", str(tmp_path / "c.png")]
    )
    assert result.exit_code == 0, result.output
    assert "val acc" in result.stdout and "69.0%" in result.stdout
    labels = perplexity_figure([run]).axes[0].get_legend_handles_labels()[1]
    assert "clf best: 71.0% accurate at step 20" in labels
    fake_run(tmp_path / "lm", 10.0)
    plain = CliRunner().invoke(
        cli, ["plot", str(tmp_path / "lm"), "--out", str(tmp_path / "l.png")]
    )
    assert "val acc" not in plain.stdout  # no run is a classifier: no column for it


def test_plot_of_a_directory_without_a_log_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "has no metrics.jsonl" in result.output
    assert "Traceback" not in result.output
    fake_run(tmp_path / "run", 10.0)
    (tmp_path / "run" / "best").mkdir()
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "run" / "best")])
    assert result.exit_code == 1 and f"the run it belongs to has: plot {tmp_path / 'run'}" in (
        result.output
    )
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "does not exist" in result.output


@pytest.mark.slow
def test_plot_of_a_real_training_run(tiny_book, tmp_path):
    out = tmp_path / "run"
    args = "--batch-size 4 --seq-len 16 --hidden 16 --layers 1 --max-steps 20 --eval-every 10"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(tiny_book),
            "--out",
            str(out),
            *args.split(),
            "--device",
            "cpu",
            "--log-every",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = load_run(out).summary()
    assert summary["steps"] == 20 and summary["best_step"] in (10, 20)
    result = CliRunner().invoke(cli, ["plot", str(out), "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_the_figure_has_plain_tick_labels_and_a_star_at_the_best_point(tmp_path):
    fake_run(tmp_path / "small", 10.0)
    run = load_run(tmp_path / "small")
    figure = perplexity_figure([run])
    figure.canvas.draw()
    axes = figure.axes[0]
    labels = [t.get_text() for t in axes.get_yticklabels(minor=True) + axes.get_yticklabels()]
    shown = [label for label in labels if label]
    assert shown and all(label.replace(".", "").isdigit() for label in shown), shown
    stars = [line for line in axes.get_lines() if line.get_marker() == "*"]
    best = run.summary()
    assert len(stars) == 1
    assert list(stars[0].get_xdata()) == [best["best_step"]]
    assert list(stars[0].get_ydata()) == [best["best_val_perplexity"]]
    assert f"{best['best_val_perplexity']:.3f}" in stars[0].get_label()


def test_plot_writes_beside_the_checkpoint_or_names_the_file_after_the_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "small", 10.0)
    fake_run(tmp_path / "large", 8.0)
    result = CliRunner().invoke(cli, ["plot", "small"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "small" / "perplexity.png").is_file()
    assert "wrote small/perplexity.png" in result.stderr
    result = CliRunner().invoke(cli, ["plot", "small", "large"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "perplexity-small-vs-large.png").is_file()
    assert not (tmp_path / "perplexity.png").exists()


def test_plot_without_a_checkpoint_uses_the_latest_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "checkpoints" / "book", 10.0)
    (tmp_path / "checkpoints" / "book" / "config.json").write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(cli, ["plot"])
    assert result.exit_code == 0, result.output
    assert "using checkpoints/book" in result.stderr
    assert (tmp_path / "checkpoints" / "book" / "perplexity.png").is_file()


@pytest.mark.parametrize("asked", ["curves", "figures/"])
def test_an_image_named_without_an_extension_is_a_png_and_said_as_written(tmp_path, asked):
    fake_run(tmp_path / "run", 10.0)
    result = CliRunner().invoke(
        cli, ["plot", str(tmp_path / "run"), "--out", str(tmp_path / asked)]
    )
    assert result.exit_code == 0, result.output
    written = tmp_path / (asked.rstrip("/") + ".png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {written}" in " ".join(result.stderr.split())  # the file that exists
