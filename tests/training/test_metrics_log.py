"""The JSON Lines metrics log every run writes into its checkpoint directory."""

from __future__ import annotations

import math

import pytest

from charlm.training import TrainConfig
from charlm.training.metrics_log import MetricsLog, read_metrics
from charlm.training.run import train_book

TRAIN_KEYS = {
    "step",
    "epoch",
    "lr",
    "train_loss",
    "train_perplexity",
    "grad_norm",
    "tokens_per_s",
    "elapsed_s",
}
EVAL_KEYS = {"step", "epoch", "elapsed_s", "val_loss", "val_perplexity", "val_bpc"}


@pytest.mark.slow
def test_a_run_logs_every_n_steps_and_each_evaluation(tiny_book, tmp_path):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=12, log_every=3, eval_every=5)
    trained = train_book(
        tiny_book,
        out=tmp_path / "run",
        training=config,
        device="cpu",
        model=dict(hidden_size=16, num_layers=1),
    )
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [r for r in records if "train_loss" in r]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train] == [3, 6, 9, 12]
    assert [r["step"] for r in evals] == [5, 10, 12]  # and once more at the end
    for record in train:
        assert set(record) == TRAIN_KEYS
        assert record["train_perplexity"] == pytest.approx(math.exp(record["train_loss"]))
        assert record["tokens_per_s"] > 0 and record["grad_norm"] > 0
    for record in evals:
        assert set(record) == EVAL_KEYS
        # One character per token: bits per character is the loss in bits.
        assert record["val_bpc"] == pytest.approx(record["val_loss"] / math.log(2))
    assert evals[-1]["val_perplexity"] == pytest.approx(trained.result.val_perplexity)
    elapsed = [r["elapsed_s"] for r in train]
    assert elapsed == sorted(elapsed)


def test_a_new_run_starts_a_new_log_and_a_resumed_one_keeps_earlier_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (1, 2, 3):
        log.write({"step": step, "train_loss": 1.0 / step})
    MetricsLog(path, resume_step=2).write({"step": 3, "train_loss": 0.5})
    assert [(r["step"], r["train_loss"]) for r in read_metrics(path)] == [
        (1, 1.0),
        (2, 0.5),
        (3, 0.5),
    ]
    MetricsLog(path)
    assert read_metrics(path) == []


def test_a_held_log_leaves_the_old_file_until_it_is_committed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    MetricsLog(path).write({"step": 7, "train_loss": 2.0})  # the old run's log
    log = MetricsLog(path, held=True)
    log.write({"step": 1, "train_loss": 1.0})
    assert log.held and [r["step"] for r in read_metrics(path)] == [7]
    log.commit()
    log.write({"step": 2, "train_loss": 0.5})
    assert not log.held and [r["step"] for r in read_metrics(path)] == [1, 2]


def test_non_finite_values_are_written_as_null_and_a_torn_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    MetricsLog(path).write({"step": 1, "train_loss": math.inf, "grad_norm": math.nan})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"step": 2, "train_lo')  # the process was killed mid-line
    assert read_metrics(path) == [{"step": 1, "train_loss": None, "grad_norm": None}]
