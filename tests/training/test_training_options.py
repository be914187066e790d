"""Optimizers, learning-rate schedules, evaluation cadence, early stopping, best and last."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import charlm
from charlm.errors import ConfigError, TrainingError
from charlm.models import ModelConfig, build_model
from charlm.tokenizers import get_tokenizer_class
from charlm.training import SilentReporter, TrainConfig, train
from charlm.training.config import format_duration, parse_duration
from charlm.training.metrics_log import read_metrics
from charlm.training.run import RunSaver, train_book
from charlm.training.schedules import LRSchedule, build_optimizer
from tests.helpers import one_error_line, run_cli

CPU = torch.device("cpu")


def tiny_model(vocab: int = 4, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = dict(embed_size=8, hidden_size=16, num_layers=1, dropout=0.0) | options
    return build_model(ModelConfig(vocab_size=vocab, **config))


class Records:
    """A metrics sink that keeps the records in memory."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)

    def train(self) -> list[dict]:
        return [r for r in self.records if "train_loss" in r]

    def evals(self) -> list[dict]:
        return [r for r in self.records if "val_loss" in r]


def test_warmup_rises_linearly_then_cosine_falls_to_the_floor():
    schedule = LRSchedule("cosine", 1.0, warmup=4, min_lr_ratio=0.1)
    assert [schedule.lr_at(s, 0.0) for s in (1, 2, 4)] == [0.25, 0.5, 1.0]
    assert schedule.lr_at(10, 0.5) == pytest.approx(0.55)
    assert schedule.lr_at(10, 1.0) == pytest.approx(0.1)
    assert LRSchedule("constant", 0.3).lr_at(1000, 1.0) == 0.3


def test_plateau_reduces_after_patience_and_state_round_trips():
    schedule = LRSchedule("plateau", 1.0, plateau_factor=0.5, plateau_patience=2)
    assert not schedule.on_eval(10.0)
    assert not schedule.on_eval(11.0)
    assert schedule.on_eval(12.0)  # two evaluations without improvement
    assert schedule.lr_at(100, 0.9) == 0.5
    restored = LRSchedule("plateau", 1.0, plateau_factor=0.5, plateau_patience=2)
    restored.load_state_dict(json.loads(json.dumps(schedule.state_dict())))
    assert restored.lr_at(100, 0.9) == 0.5 and restored.best == 10.0


@pytest.mark.parametrize(
    "name,kind",
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_optimizers(name, kind):
    optimizer = build_optimizer(
        tiny_model().parameters(), name, lr=0.1, momentum=0.8, weight_decay=0.01
    )
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.8


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.slow
def test_every_optimizer_lowers_the_loss(optimizer):
    ids = np.tile(np.array([0, 1, 2, 3]), 200)
    lr = 0.5 if optimizer == "sgd" else 0.01
    log = Records()
    config = TrainConfig(
        batch_size=4,
        seq_len=8,
        epochs=1,
        max_steps=40,
        lr=lr,
        optimizer=optimizer,
        log_every=10,
        schedule="constant",  # the optimizer alone, not the schedule, is under test
    )
    train(tiny_model(), ids, None, config, device=CPU, metrics=log)
    losses = [r["train_loss"] for r in log.train()]
    assert losses[-1] < losses[0] * 0.7


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train(
            tiny_model(),
            np.zeros(100, dtype=np.int64),
            None,
            TrainConfig(batch_size=2, seq_len=4, precision="fp16"),
            device=CPU,
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr": "x"}, "lr must be a number, got 'x'"),
        ({"max_time": "5m"}, "max_time must be a number or None, got '5m'"),
        ({"batch_size": "4"}, "batch_size must be a whole number, got '4'"),
        ({"max_steps": 2.5}, "max_steps must be a whole number or None, got 2.5"),
        ({"epochs": None}, "epochs must be a whole number, got None"),
        ({"batch_size": True}, "batch_size must be a whole number, got True"),
    ],
)
def test_a_setting_of_the_wrong_kind_is_a_config_error_naming_it(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**settings)
    assert TrainConfig(lr=1, max_time=60).lr == 1  # a whole number is a fine number


def test_train_book_takes_its_settings_as_configs_or_dicts(tiny_book, tmp_path):
    for settings, message in [
        ({"training": {"max_tim": 1}}, "training has no setting 'max_tim'"),
        ({"training": ["max_time"]}, "training must be a TrainConfig or a dict, got list"),
        ({"data": {"val_fraction": "half"}}, "val_fraction must be a number"),
        ({"model": "lstm"}, "model must be a ModelConfig or a dict, got str"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            train_book(tiny_book, out=tmp_path / "never", device="cpu", **settings)
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_cosine_follows_the_clock_when_there_is_a_deadline():
    # 1000 epochs would take minutes: only a schedule that follows the 1 s deadline decays.
    ids = np.tile(np.array([0, 1, 2, 3]), 100)
    log = Records()
    config = TrainConfig(
        batch_size=2,
        seq_len=8,
        epochs=1000,
        lr=0.01,
        schedule="cosine",
        min_lr_ratio=0.1,
        max_time=1.0,
        log_every=1,
    )
    result = train(tiny_model(), ids, None, config, device=CPU, metrics=log)
    assert result.stopped_by == "max_time"
    records = log.train()
    schedule = LRSchedule("cosine", 0.01, min_lr_ratio=0.1)
    assert records[0]["lr"] == 0.01
    for before, record in zip(records, records[1:], strict=False):
        # Each step's rate comes from the share of the deadline used by the steps before it.
        assert record["lr"] == pytest.approx(schedule.lr_at(record["step"], before["elapsed_s"]))
    assert records[-1]["elapsed_s"] >= 1.0
    # Past half the deadline the rate is well down the curve (by steps it would not have
    # moved); on a busy machine the last step may have begun before that, so all are checked.
    late = [r for b, r in zip(records, records[1:], strict=False) if b["elapsed_s"] >= 0.5]
    assert late and all(r["lr"] < 0.006 for r in late)


def diverging_data():
    """Training text alternates a, b; validation is all b, which gets less likely as it learns."""
    return np.tile(np.array([0, 1]), 400), np.full(200, 1)


@pytest.mark.slow
def test_eval_every_early_stopping_and_plateau():
    train_ids, val_ids = diverging_data()
    log = Records()
    config = TrainConfig(
        batch_size=4,
        seq_len=8,
        epochs=5,
        lr=0.02,
        eval_every=5,
        patience=2,
        schedule="plateau",
        plateau_patience=1,
        log_every=1,
    )
    result = train(tiny_model(vocab=2), train_ids, val_ids, config, device=CPU, metrics=log)
    evals = log.evals()
    assert [r["step"] for r in evals] == [5, 10, 15]  # stopped after two evaluations
    assert result.stopped_by == "early_stopping" and result.steps == 15
    assert result.best_step == 5
    lrs = {r["step"]: r["lr"] for r in log.train()}
    assert lrs[11] == pytest.approx(0.01) and lrs[15] == pytest.approx(0.01)


@pytest.mark.slow
def test_validation_runs_each_epoch_without_eval_every():
    train_ids, val_ids = diverging_data()
    log = Records()
    config = TrainConfig(batch_size=4, seq_len=8, epochs=3, lr=0.01)
    result = train(tiny_model(vocab=2), train_ids, val_ids, config, device=CPU, metrics=log)
    assert len(log.evals()) == 3
    assert [r["step"] for r in log.evals()][-1] == result.steps


@pytest.mark.slow
def test_best_is_kept_beside_last_and_both_load(tiny_book, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(batch_size=4, seq_len=16, epochs=2, eval_every=15, lr=0.01)
    trained = train_book(
        tiny_book, out=out, training=config, device="cpu", model=dict(hidden_size=32, num_layers=1)
    )
    assert trained.best == out / "best"
    last = json.loads((out / "config.json").read_text())
    best = json.loads((out / "best" / "config.json").read_text())
    evals = [r for r in read_metrics(out / "metrics.jsonl") if "val_loss" in r]
    assert best["val_perplexity"] == pytest.approx(min(r["val_perplexity"] for r in evals))
    assert last["results"]["steps"] == trained.result.steps
    assert "training_state" in last and "training_state" not in best
    assert charlm.load(out, device="cpu").generate("the", 10, seed=1).startswith("the")
    assert charlm.load(out / "best", device="cpu").generate("the", 10, seed=1).startswith("the")


@pytest.mark.slow
def test_a_nonfinite_model_never_overwrites_best(tmp_path):
    tok = get_tokenizer_class("char").train("abcd")
    ids = np.tile(np.array([0, 1, 2, 3]), 100)
    model = tiny_model()
    corrupt_call(model, 5)  # steps and one-chunk evaluations alternate: call 5 is step 3
    saver = RunSaver(tmp_path / "run", tok, TrainConfig(), {})
    config = TrainConfig(batch_size=2, seq_len=8, max_steps=10, eval_every=1, log_every=100)
    with pytest.raises(TrainingError, match="loss became non-finite by step 3"):
        train(model, ids, ids[:17], config, device=CPU, checkpointer=saver)
    for path in (tmp_path / "run", tmp_path / "run" / "best"):
        saved = json.loads((path / "config.json").read_text())
        assert saved["results"]["steps"] == 2
        weights = charlm.load(path, device="cpu").model.parameters()
        assert all(torch.isfinite(p).all() for p in weights)


def corrupt_call(model: torch.nn.Module, call: int) -> None:
    """Make the output layer return NaN on its `call`-th forward pass."""
    calls = {"n": 0}

    def hook(module, inputs, output):
        calls["n"] += 1
        return output * math.nan if calls["n"] == call else output

    model.head.register_forward_hook(hook)


@pytest.mark.slow
def test_nonfinite_skip_skips_the_batch_and_goes_on():
    ids = np.tile(np.array([0, 1, 2, 3]), 100)
    model = tiny_model()
    corrupt_call(model, 3)
    config = TrainConfig(batch_size=2, seq_len=8, max_steps=10, nonfinite="skip", log_every=1)
    log = Records()
    result = train(model, ids, None, config, device=CPU, metrics=log)
    assert result.skipped_batches == 1 and result.steps == 10
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert log.train()[-1]["skipped_batches"] == 1


@pytest.mark.slow
def test_nonfinite_stop_is_a_clear_error():
    ids = np.tile(np.array([0, 1, 2, 3]), 100)
    model = tiny_model()
    corrupt_call(model, 3)
    config = TrainConfig(batch_size=2, seq_len=8, max_steps=10, log_every=1)
    with pytest.raises(TrainingError, match="non-finite by step 3.*--nonfinite skip"):
        train(model, ids, None, config, device=CPU)


# A rate that overflows the first evaluation: a validation loss that is not finite at step 2.
DIVERGING = ["--model", "rnn", "--nonlinearity", "relu", "--optimizer", "sgd", "--momentum", "0",
             "--lr", "1e30", "--clip", "1e30", "--eval-every", "2", "--max-steps", "6",
             "--hidden", "16", "--embed", "8", "--layers", "1", "--batch-size", "4",
             "--seq-len", "16", "--threads", "1"]  # fmt: skip


@pytest.mark.slow
def test_a_diverged_run_says_what_it_kept_and_what_to_try(tiny_book, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", tiny_book, "--out", out, *DIVERGING, "--nonfinite", "skip")
    line = one_error_line(result, after_progress=True)
    assert "validation loss became non-finite by step 2" in line and "Nothing was saved" in line
    assert "not evaluations" in line and "pass --nonfinite skip" not in line  # it was passed
    assert not out.exists()
    sane = [value if value != "1e30" else "0.1" for value in DIVERGING]
    earlier = run_cli("train", tiny_book, "--out", out, *sane)
    assert earlier.exit_code == 0, earlier.output
    result = run_cli("train", tiny_book, "--out", out, *DIVERGING, "--overwrite")
    line = one_error_line(result, after_progress=True)
    assert "pass --nonfinite skip" in line and f"the earlier run in {out} is as it was" in line


@pytest.mark.slow
def test_init_from_needs_an_encodable_book(tiny_book, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=2)
    train_book(
        tiny_book, out=out, training=config, device="cpu", model=dict(hidden_size=16, num_layers=1)
    )
    other = tmp_path / "other.txt"
    other.write_text("Zebras QUIZ xylophones! " * 100, encoding="utf-8")
    with pytest.raises(charlm.CharlmError, match="cannot be encoded by the tokenizer of"):
        train_book(other, out=tmp_path / "ft", training=config, device="cpu", init_from=out)
    tuned = train_book(tiny_book, out=tmp_path / "ft", training=config, device="cpu", init_from=out)
    saved = json.loads((tuned.checkpoint / "config.json").read_text())
    assert saved["data"]["init_from"] == str(out)
    assert saved["model"]["hidden_size"] == 16


@pytest.mark.slow
def test_a_frozen_encoder_keeps_the_layers_of_init_from_through_a_resumed_run(tiny_book, tmp_path):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=2)
    shape = dict(hidden_size=16, num_layers=2, embed_size=8)
    base = train_book(tiny_book, out=tmp_path / "base", training=config, device="cpu", model=shape)
    frozen = replace(config, freeze="encoder", max_steps=3)
    out = tmp_path / "frozen"
    train_book(tiny_book, out=out, training=frozen, device="cpu", init_from=base.checkpoint)
    resumed = train_book(tiny_book, training=replace(frozen, max_steps=6), device="cpu", resume=out)
    before = charlm.load(base.checkpoint, device="cpu").model.state_dict()
    after = charlm.load(out, device="cpu").model.state_dict()
    assert resumed.result.steps == 6
    for name, weights in after.items():
        same = torch.equal(weights, before[name])
        assert same == (not name.startswith("head.")), name


@pytest.mark.slow
def test_discriminative_rates_slow_each_layer_of_a_fine_tuned_language_model(tiny_book, tmp_path):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=2, schedule="constant", lr=1e-2)
    shape = dict(hidden_size=16, num_layers=2, embed_size=8)
    base = train_book(tiny_book, out=tmp_path / "base", training=config, device="cpu", model=shape)
    layered = replace(config, lr_decay_per_layer=4.0, max_steps=1)
    out = tmp_path / "layered"
    train_book(tiny_book, out=out, training=layered, device="cpu", init_from=base.checkpoint)
    before = charlm.load(base.checkpoint, device="cpu").model
    after = charlm.load(out, device="cpu").model
    # Adam's first step moves every weight by its rate (times the sign of its gradient).
    moved = [
        max((b - a).abs().max().item() for a, b in zip(group_a, group_b))
        for group_a, group_b in zip(before.parameter_groups(), after.parameter_groups())
    ]  # embedding, layer 0, layer 1, head
    expected = [1e-2 / 4**3, 1e-2 / 4**2, 1e-2 / 4, 1e-2]
    assert moved == pytest.approx(expected, rel=1e-3)
    longer = replace(layered, max_steps=3)
    assert train_book(tiny_book, training=longer, device="cpu", resume=out).result.steps == 3


@pytest.mark.parametrize(
    "text,seconds",
    [("90", 90), ("90s", 90), ("10m", 600), ("2min", 120), ("2 MIN", 120), ("1h", 3600),
     ("1.5 hours", 5400), ("1h30m", 5400), ("1h 30min", 5400), ("45 seconds", 45)],
)  # fmt: skip
def test_durations_take_the_usual_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "1h1h", "1h30", "m", "-5"])
def test_durations_that_cannot_be_read_say_how_to_write_one(text):
    with pytest.raises(ConfigError, match="use e.g. 300, 90s, 10m, 2min, 1h"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.5, 9.9, 10, 61, 3600, 3725, 86_400])
def test_a_formatted_duration_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.slow
def test_train_book_shows_the_live_display_when_stderr_is_a_terminal(
    tiny_book, tmp_path, monkeypatch, capsys
):
    settings = dict(
        model={"hidden_size": 8, "embed_size": 8, "num_layers": 1},
        training=TrainConfig(batch_size=2, seq_len=8, max_steps=2),
        device="cpu",
    )
    train_book(tiny_book, out=tmp_path / "quiet", **settings)
    assert capsys.readouterr().err == ""  # not a terminal: nothing
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich then takes stderr for a terminal
    train_book(tiny_book, out=tmp_path / "shown", **settings)
    shown = capsys.readouterr().err
    assert "1 book, train 1,890" in shown and "tokens/s" in shown and "step 2" in shown
    train_book(tiny_book, out=tmp_path / "off", reporter=SilentReporter(), **settings)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_python_resume_takes_a_dict_of_the_stopping_rules(tiny_book, tmp_path):
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=2)
    out = tmp_path / "run"
    train_book(tiny_book, out=out, training=config, device="cpu", model=dict(hidden_size=8))
    # Only the stopping rules change; the batch of 4 stays (the dict's defaults do not apply).
    assert train_book(resume=out, training={"max_steps": 3}, device="cpu").result.steps == 3
    with pytest.raises(ConfigError, match="--batch-size cannot change"):
        train_book(resume=out, training={"max_steps": 4, "batch_size": 8}, device="cpu")
    with pytest.raises(ConfigError, match="--batch-size, --seq-len cannot change"):
        train_book(resume=out, training=TrainConfig(max_steps=4), device="cpu")
