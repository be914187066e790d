"""The step schedule (Zaremba et al.: constant, then a fixed factor per epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.training import TrainConfig, train
from charlm.training.schedules import LRSchedule
from tests.helpers import TINY_TRAIN_ARGS

CPU = torch.device("cpu")


class Records:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(4, embed_size=8, hidden_size=8, num_layers=1, dropout=0.0))


def test_step_keeps_the_rate_then_multiplies_it_once_per_epoch():
    schedule = LRSchedule("step", 1.0, decay_factor=0.5, decay_start=4)
    rates = [schedule.lr_at(1, 0.0, epoch) for epoch in range(1, 14)]
    assert rates[:4] == [1.0] * 4
    assert rates[4:] == [0.5**k for k in range(1, 10)]  # Zaremba's small model: 1 → 0.5⁹


@pytest.mark.slow
def test_training_follows_the_step_schedule_epoch_by_epoch():
    ids = np.tile(np.array([0, 1, 2, 3]), 50)  # 200 tokens: 4 steps of 2 x 20 per epoch
    log = Records()
    config = TrainConfig(
        batch_size=2, seq_len=20, epochs=4, lr=1.0, optimizer="sgd", momentum=0.0,
        schedule="step", decay_factor=0.25, decay_start=2, log_every=1,
    )  # fmt: skip
    train(tiny_model(), ids, None, config, device=CPU, metrics=log)
    by_epoch = {}
    for record in log.records:
        by_epoch.setdefault(record["epoch"], set()).add(record["lr"])
    assert by_epoch == {1: {1.0}, 2: {1.0}, 3: {0.25}, 4: {0.0625}}


@pytest.mark.slow
def test_under_a_deadline_the_step_schedule_counts_shares_of_the_deadline():
    # 1000 epochs would take minutes; the rate must still decay within the 1 s deadline.
    ids = np.tile(np.array([0, 1, 2, 3]), 100)
    log = Records()
    config = TrainConfig(
        batch_size=2, seq_len=8, epochs=1000, lr=0.01, schedule="step", decay_factor=0.5,
        decay_start=1, max_time=1.0, log_every=1,
    )  # fmt: skip
    # 1000 "epochs" of a millisecond each: the rate halves each millisecond after the first.
    result = train(tiny_model(), ids, None, config, device=CPU, metrics=log)
    assert result.stopped_by == "max_time"
    records = log.records
    for before, record in zip(records, records[1:]):
        share = 1 + int(before["elapsed_s"] * 1000)
        assert record["lr"] == pytest.approx(0.01 * 0.5 ** max(0, min(share, 1000) - 1))
    assert records[-1]["lr"] < 1e-4


def test_bad_step_settings_are_errors():
    with pytest.raises(ConfigError, match="decay_factor"):
        TrainConfig(decay_factor=0.0)
    with pytest.raises(ConfigError, match="decay_start"):
        TrainConfig(decay_start=-1)


@pytest.mark.slow
def test_cli_step_schedule_is_recorded(tiny_book, tmp_path):
    out = tmp_path / "ck"
    result = CliRunner().invoke(
        cli,
        ["train", str(tiny_book), "--out", str(out), *TINY_TRAIN_ARGS,
         "--max-steps", "2",
         "--schedule", "step", "--decay-factor", "0.5", "--decay-start", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["schedule"] == "step"
    assert (training["decay_factor"], training["decay_start"]) == (0.5, 3)
