"""Under torchrun a resumed run logs what the unstopped run logged: every rank goes on from its
own loss totals, not rank 0's (the first record after a resume was off by 1e-2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from charlm.checkpoint import read_config
from charlm.training import SilentReporter
from charlm.training.distributed import DistContext
from charlm.training.metrics_log import read_metrics
from charlm.training.recorder import Recorder

CPU = torch.device("cpu")
# Records every 3 steps and a stop at step 4: the saved window holds step 4's loss, which
# the resumed run's first record (step 6) averages with steps 5 and 6.
ARGS = "--batch-size 4 --seq-len 16 --hidden 32 --layers 1 --dropout 0 --log-every 3"
ARGS += " --eval-every 3 --device cpu --threads 1 --schedule constant"


def torchrun(*args: object) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*launcher, "--nproc-per-node", "2", "-m", "charlm", "train", *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    errors = [line for line in done.stderr.splitlines() if "Error" in line]
    assert done.returncode == 0, "\n".join(errors[:10]) or done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_stopped_and_resumed_log_what_an_unstopped_run_logs(tiny_book, tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    torchrun(tiny_book, "--out", whole, "--max-steps", "7", *ARGS.split())
    torchrun(tiny_book, "--out", stopped, "--max-steps", "4", *ARGS.split())
    assert read_config(stopped)["training_state"]["window"][3] == 1  # step 4, not logged yet
    torchrun("--resume", stopped, "--max-steps", "7")

    def train_records(out):
        return [
            (r["step"], r["train_loss"], r["grad_norm"])
            for r in read_metrics(out / "metrics.jsonl")
            if "train_loss" in r
        ]

    resumed, unstopped = train_records(stopped), train_records(whole)
    assert [step for step, _, _ in resumed] == [3, 6]
    for (_, loss, grad), (_, want_loss, want_grad) in zip(resumed, unstopped, strict=True):
        assert loss == pytest.approx(want_loss, abs=1e-6)
        assert grad == pytest.approx(want_grad, abs=1e-6)
    # The run's train perplexity is the epoch's mean loss so far: the saved epoch meters.
    got, want = read_config(stopped)["results"], read_config(whole)["results"]
    assert got["train_perplexity"] == pytest.approx(want["train_perplexity"], abs=1e-6)


def recorder(rank: int, world_size: int) -> Recorder:
    return Recorder(
        SilentReporter(), None, DistContext(rank, world_size), CPU, stop_on_nonfinite=True
    )


def test_each_rank_saves_its_totals_and_takes_its_own_back(monkeypatch):
    ranks = [recorder(0, 2), recorder(1, 2)]
    for rank, (loss, tokens) in enumerate([(2.0, 64), (3.0, 32)]):
        ranks[rank].add(torch.tensor(loss), tokens, torch.tensor(0.5))

    def all_gather(parts, mine):  # what gloo gives rank 0: its own values, then rank 1's
        parts[0].copy_(mine)
        parts[1].copy_(torch.tensor(ranks[1].epoch.state() + ranks[1].window.state()))

    monkeypatch.setattr(torch.distributed, "all_gather", all_gather)
    state = ranks[0].state()
    assert state["rank_meters"] == [
        [[128.0, 0.5, 64, 1], [128.0, 0.5, 64, 1]],
        [[96.0, 0.5, 32, 1], [96.0, 0.5, 32, 1]],
    ]
    for rank in (0, 1):
        back = recorder(rank, 2)
        back.load(state)
        assert back.window.state() == ranks[rank].window.state()
        assert back.epoch.state() == ranks[rank].epoch.state()
    # Resumed by another number of processes, every rank starts from the ranks' mean.
    assert state["window"] == state["epoch_meter"] == [112.0, 0.5, 48, 1]
    other = recorder(2, 3)
    other.load(state)
    assert other.window.state() == [112.0, 0.5, 48, 1]


def test_one_process_saves_as_before():
    one = recorder(0, 1)
    one.add(torch.tensor(2.0), 10, torch.tensor(1.0))
    assert one.state() == {
        "epoch_meter": [20.0, 1.0, 10, 1],
        "window": [20.0, 1.0, 10, 1],
        "window_start": [0.0, 0],
    }


@pytest.mark.parametrize(
    "rank_meters",
    ["x", [[1.0, 0.0, 1, 1]], [[[1.0, 0.0, 1, 1], [-1.0, 0.0, 1, 1]]], [[[1, 0, 1], [1, 0, 1, 1]]]],
)
def test_damaged_rank_meters_are_refused_on_every_rank(rank_meters):
    state = {"epoch_meter": [1.0, 0.0, 1, 1], "window": [1.0, 0.0, 1, 1], "window_start": [0, 0]}
    for rank in (0, 1):
        with pytest.raises(ValueError, match="rank_meters is"):
            recorder(rank, 2).load({**state, "rank_meters": rank_meters})
