"""Data-parallel training under torchrun: two CPU processes (gloo, loopback) equal one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from charlm.checkpoint import load_checkpoint, read_config
from charlm.errors import ConfigError
from charlm.training import TrainConfig
from charlm.training.distributed import DistContext
from charlm.training.metrics_log import read_metrics
from charlm.training.run import train_book
from tests.helpers import one_error_line, run_cli

ARGS = "--batch-size 4 --seq-len 16 --hidden 32 --layers 1 --dropout 0 "
ARGS += "--log-every 1 --eval-every 3 --device cpu --threads 1"
# A constant rate: cosine would plan its decay over --max-steps, which differs between a run
# stopped at 4 and resumed to 7 and one planned for 7 from the start.
ARGS += " --schedule constant"


def torchrun(*args: str) -> str:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*launcher, "--nproc-per-node", "2", "-m", "charlm", "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("saved ") == 1  # only rank 0 reports and saves
    return done.stderr


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tiny_book, tmp_path):
    out = tmp_path / "ddp"
    torchrun(str(tiny_book), "--out", str(out), "--max-steps", "4", *ARGS.split())
    # Resumed under torchrun: the saved whole-batch hidden state is split between the ranks.
    torchrun("--resume", str(out), "--max-steps", "7")

    config = TrainConfig(
        batch_size=4, seq_len=16, max_steps=7, log_every=1, eval_every=3, schedule="constant"
    )
    single = train_book(
        tiny_book,
        out=tmp_path / "one",
        training=config,
        device="cpu",
        model=dict(hidden_size=32, num_layers=1, dropout=0.0),
    )

    ddp_log = read_metrics(out / "metrics.jsonl")
    one_log = read_metrics(tmp_path / "one" / "metrics.jsonl")
    ddp_train = [r for r in ddp_log if "train_loss" in r]
    one_train = [r for r in one_log if "train_loss" in r]
    assert [r["step"] for r in ddp_train] == list(range(1, 8))  # appended after the resume
    ddp_losses = [r["train_loss"] for r in ddp_train]
    assert ddp_losses == pytest.approx([r["train_loss"] for r in one_train], abs=1e-5)
    assert ddp_log[-1]["val_loss"] == pytest.approx(one_log[-1]["val_loss"], abs=1e-5)
    ddp_model = load_checkpoint(out).model
    one_model = load_checkpoint(single.checkpoint).model
    for p, q in zip(ddp_model.parameters(), one_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)


def test_each_rank_takes_its_own_contiguous_rows():
    batch = torch.arange(8).view(4, 2)
    assert DistContext(0, 2).shard(batch).tolist() == [[0, 1], [2, 3]]
    assert DistContext(1, 2).shard(batch).tolist() == [[4, 5], [6, 7]]
    state = torch.arange(8.0).view(1, 4, 2)  # (layers, batch, hidden)
    assert DistContext(1, 2).shard_state(state).tolist() == [[[4.0, 5.0], [6.0, 7.0]]]


def test_batch_must_split_evenly():
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        DistContext(0, 3).check_batch_size(4)


@pytest.mark.slow
def test_ctrl_c_under_torchrun_stops_every_rank_at_one_step_and_saves(tiny_book, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    charlm = ["-m", "charlm", "train", str(tiny_book), "--out", str(out), "--epochs", "10000"]
    command = [*launcher, "--nproc-per-node", "2", *charlm, "--recipe", "tiny", *ARGS.split()]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Its own session, so that the signal goes to the launcher and the workers at once, as a
    # Ctrl-C in a terminal does.
    proc = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    log = out / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (log.exists() and len(read_metrics(log)) >= 5) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert f"Continue with: torchrun ... -m charlm train --resume {out}" in stderr
    assert stderr.count("recipe tiny:") == 1  # said by rank 0 alone
    saved = read_config(out)["training_state"]["step"]
    logged = [r["step"] for r in read_metrics(log) if "train_loss" in r]
    assert saved == logged[-1] >= 5  # saved where it stopped; ranks that disagreed would hang


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' in the environment is not a whole number"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR"),
        (
            {
                "WORLD_SIZE": "2",
                "RANK": "5",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29500",
            },
            "RANK=5 must be below WORLD_SIZE=2",
        ),  # fmt: skip
    ],
)
def test_a_wrong_torchrun_environment_is_one_error_line(tiny_book, tmp_path, monkeypatch,
                                                        variables, message):  # fmt: skip
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = run_cli("train", tiny_book, "--out", tmp_path / "out", *ARGS.split())
    assert result.exit_code == 1
    assert message in one_error_line(result)
    assert not (tmp_path / "out").exists()


AT_EXIT = """
import atexit, glob, os
from charlm.cli import main

def threads_at_exit():
    names = sorted(open(t).read().strip() for t in glob.glob("/proc/self/task/*/comm"))
    with open(os.environ["THREADS_AT_EXIT"] + os.environ["RANK"], "w") as f:
        f.write(" ".join(names))

atexit.register(threads_at_exit)
main()
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_no_process_group_thread_outlives_a_distributed_run(tiny_book, tmp_path):
    # gloo's threads left alive at exit raced the C++ runtime's teardown: now and then a rank
    # aborted with "terminate called without an active exception" (benchmarks/ddp_soak.py).
    script = tmp_path / "charlm_at_exit.py"
    script.write_text(AT_EXIT)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*launcher, "--nproc-per-node", "2", str(script), "train", str(tiny_book)]
    command += ["--out", str(tmp_path / "ddp"), "--max-steps", "2", *ARGS.split()]
    report = tmp_path / "threads-"
    env = dict(os.environ, OMP_NUM_THREADS="1", THREADS_AT_EXIT=str(report))
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        threads = (tmp_path / f"threads-{rank}").read_text().split()
        assert not [name for name in threads if "gloo" in name], threads
