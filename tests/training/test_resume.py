"""Exact resume, safe stops on SIGINT/SIGTERM, and checkpoints that survive SIGKILL."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from charlm.checkpoint import TrainingState, load_checkpoint, load_training_state, read_config
from charlm.cli import cli
from charlm.errors import CheckpointError
from charlm.models import ModelConfig, build_model
from charlm.tokenizers import get_tokenizer_class
from charlm.training import TrainConfig, train
from charlm.training.config import parse_duration
from charlm.training.metrics_log import read_metrics
from charlm.training.run import RunSaver
from charlm.training.signals import StopFlag

CPU = torch.device("cpu")
TEXT = "the cat sat on the mat. a dog ran in the fog. " * 12


class StopAt:
    """A metrics sink that records training losses and asks the run to stop after step k."""

    def __init__(self, stop: StopFlag | None = None, at: int | None = None) -> None:
        self.stop, self.at, self.losses = stop, at, {}

    def write(self, record: dict) -> None:
        if "train_loss" in record:
            self.losses[record["step"]] = record["train_loss"]
            if self.stop is not None and record["step"] == self.at:
                self.stop.request("interrupted")


def fresh_model(cell: str, vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=vocab,
        cell=cell,
        embed_size=8,
        hidden_size=16,
        num_layers=2,
        dropout=0.3,
        embed_dropout=0.2,
    )
    return build_model(config)


@pytest.mark.parametrize(
    "cell,iterator,stop_at",
    [
        ("lstm", "sequential", 7),  # mid-epoch, carrying an LSTM (h, c) state
        ("gru", "sequential", 12),  # the last step of epoch 1 and an evaluation step
        ("rnn", "random", 9),
    ],
)
@pytest.mark.slow
def test_a_stopped_and_resumed_run_matches_an_uninterrupted_one(tmp_path, cell, iterator, stop_at):
    tok = get_tokenizer_class("char").train(TEXT)
    ids = tok.encode_array(TEXT)
    train_ids, val_ids = ids[:-60], ids[-60:]
    config = TrainConfig(
        batch_size=4,
        seq_len=10,
        epochs=3,
        lr=0.01,
        iterator=iterator,
        schedule="cosine",
        warmup=3,
        eval_every=4,
        log_every=1,
        seed=3,
    )

    straight = StopAt()
    full = train(
        fresh_model(cell, tok.vocab_size), train_ids, val_ids, config, device=CPU, metrics=straight
    )

    stop = StopFlag()
    first = StopAt(stop, stop_at)
    saver = RunSaver(tmp_path / "run", tok, config, {})
    part = train(
        fresh_model(cell, tok.vocab_size),
        train_ids,
        val_ids,
        config,
        device=CPU,
        metrics=first,
        stop=stop,
        checkpointer=saver,
    )
    assert part.stopped_by == "interrupted" and part.steps == stop_at

    torch.manual_seed(12345)  # the resumed run must not depend on the global RNG it finds
    second = StopAt()
    model = load_checkpoint(tmp_path / "run").model
    resumed = train(
        model,
        train_ids,
        val_ids,
        config,
        device=CPU,
        metrics=second,
        resume=load_training_state(tmp_path / "run"),
    )

    assert resumed.steps == full.steps
    assert sorted(first.losses) == list(range(1, stop_at + 1))
    assert sorted(second.losses) == list(range(stop_at + 1, full.steps + 1))
    joined = first.losses | second.losses
    for step, loss in straight.losses.items():
        assert joined[step] == pytest.approx(loss, abs=1e-6), f"step {step}"
    assert resumed.val_loss == pytest.approx(full.val_loss, abs=1e-6)


def test_a_finished_model_without_state_cannot_be_resumed(tmp_path):
    tok = get_tokenizer_class("char").train(TEXT)
    RunSaver(tmp_path / "run", tok, TrainConfig(), {}).save_best(
        fresh_model("gru", 20), {"train_perplexity": 1.0, "val_perplexity": None}
    )
    with pytest.raises(CheckpointError, match="--init-from"):
        load_training_state(tmp_path / "run" / "best")


def test_an_earlier_runs_best_beside_a_new_run_without_one_is_removed_on_resume(tmp_path):
    # --overwrite, killed after the new run's first save (a Ctrl-C save: no evaluation, no
    # best yet) and before the old run's best was removed: that best is not this run's.
    tok = get_tokenizer_class("char").train(TEXT)
    saver = RunSaver(tmp_path / "run", tok, TrainConfig(), {})
    summary = {"train_perplexity": 1.0, "val_perplexity": None, "steps": 60}
    saver.save_best(fresh_model("gru", 20), summary)  # the old run's
    new = TrainingState({"step": 5, "best_step": None})
    said = saver.restore_best(fresh_model("lstm", 20), new, summary)
    assert said == f"removed {saver.best}, an earlier run's (this run has no best yet)"
    assert not saver.best.exists()
    assert saver.restore_best(fresh_model("lstm", 20), new, summary) is None  # nothing now
    # An older checkpoint that does not record best_step at all: its best is left alone.
    saver.save_best(fresh_model("gru", 20), summary)
    assert saver.restore_best(fresh_model("gru", 20), TrainingState({"step": 5}), summary) is None
    assert saver.best.exists()


def run_cli(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "charlm", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_sigterm_while_the_command_starts_ends_it_as_a_stop(tmp_path, monkeypatch):
    # A command imports its module, and with it PyTorch, for seconds after it starts: a
    # SIGTERM then (QA: at 1.15 s) killed it without a word (status -15). Sent here just as
    # the command is looked up (its module imported), it now ends it: "Terminated.", 143.
    from charlm.cli import CharlmGroup

    real = CharlmGroup.get_command

    def terminated_while_importing(self, ctx, name):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, ctx, name)

    monkeypatch.setattr(CharlmGroup, "get_command", terminated_while_importing)
    unhandled = []
    previous = signal.signal(signal.SIGTERM, lambda *_: unhandled.append(True))
    try:
        result = CliRunner().invoke(cli, ["train", "book.txt", "--out", str(tmp_path / "run")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not unhandled
    assert result.exit_code == 143 and result.stderr.endswith("Terminated.\n"), result.output
    assert not (tmp_path / "run").exists()


def wait_for_steps(log: Path, proc: subprocess.Popen, steps: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(read_metrics(log)) >= steps:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach {steps} steps: {proc.poll()}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
@pytest.mark.slow
def test_a_signal_saves_and_the_run_resumes_from_the_cli(tmp_path, sig, code, word):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 4, encoding="utf-8")
    out = tmp_path / "run"
    proc = run_cli(
        "train",
        str(book),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--hidden",
        "32",
        "--layers",
        "1",
        "--log-every",
        "1",
        "--epochs",
        "1000",
        "--device",
        "cpu",
    )
    wait_for_steps(out / "metrics.jsonl", proc, 3)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"charlm train --resume {out}" in stderr and word in stderr
    stopped = read_config(out)["training_state"]["step"]

    result = CliRunner().invoke(
        cli, ["train", "--resume", str(out), "--max-steps", str(stopped + 5), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "train_loss" in r]
    assert steps == list(range(1, stopped + 6))  # appended, no step lost or repeated


SAVER = textwrap.dedent(
    """
    import sys, torch
    from charlm.checkpoint import save_checkpoint
    from charlm.models import ModelConfig, build_model
    from charlm.checkpoint import TrainingState
    from charlm.tokenizers import get_tokenizer_class

    out, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tok = get_tokenizer_class("char").train("abcdefgh")
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, hidden_size=256, embed_size=64))
    for step in range(start, start + count):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(step)  # weights, state and config all say which save they belong to
        state = TrainingState({"step": step}, {"marker": torch.full((1000,), float(step))})
        save_checkpoint(out, model, tok, training_state=state, step=step)
        if step == start:
            print("ready", flush=True)  # one complete save: from now on one must always load
    """
)


@pytest.mark.slow
def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "ck"
    script = tmp_path / "saver.py"
    script.write_text(SAVER, encoding="utf-8")
    rng = random.Random(0)
    last_step = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(out), str(last_step + 1), "100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoint = load_checkpoint(out)  # the previous complete save, whatever was cut off
        step = checkpoint.config["step"]
        assert step > last_step
        assert all(torch.all(p == step) for p in checkpoint.model.parameters())
        state = load_training_state(out)
        assert state.step == step and torch.all(state.tensors["marker"] == step)
        last_step = step
    assert last_step > 0
    # The next complete save removes whatever the killed ones left behind.
    subprocess.run(
        [sys.executable, str(script), str(out), str(last_step + 1), "1"],
        check=True,
        capture_output=True,
    )
    # A save keeps the previous weights for readers that may still need them: at most two sets.
    names = [p.name.split("-")[0] for p in out.iterdir()]
    assert set(names) == {"config.json", "training", "weights"}
    assert names.count("config.json") == 1 and names.count("weights") <= 2


@pytest.mark.slow
def test_resume_appends_to_the_metrics_log_from_the_saved_step(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 2, encoding="utf-8")
    out = tmp_path / "run"
    args = [
        "--batch-size",
        "4",
        "--seq-len",
        "8",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--log-every",
        "2",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(
        cli, ["train", str(book), "--out", str(out), "--max-steps", "6", *args]
    )
    assert result.exit_code == 0, result.output
    log = out / "metrics.jsonl"
    # A run killed after logging step 8 but before saving: the resumed run redoes step 8.
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"step": 8, "train_loss": 1.0}\n{"step": 1')
    result = CliRunner().invoke(cli, ["train", "--resume", str(out), "--max-steps", "10"])
    assert result.exit_code == 0, result.output
    steps = [r["step"] for r in read_metrics(log) if "train_loss" in r]
    assert steps == [2, 4, 6, 8, 10]
    assert np.isfinite([r["train_loss"] for r in read_metrics(log) if "train_loss" in r]).all()


@pytest.mark.slow
def test_resuming_a_finished_run_trains_no_further_unless_extended(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 2, encoding="utf-8")
    out = tmp_path / "run"
    args = "--batch-size 4 --seq-len 8 --hidden 16 --layers 1 --log-every 1 --device cpu"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["train", str(book), "--out", str(out), "--max-steps", "4", *args.split()]
    )
    assert result.exit_code == 0, result.output
    checkpoint = [path for path in out.iterdir() if path.name != ".train.lock"]
    before = {path.name: path.stat().st_mtime_ns for path in checkpoint}
    result = runner.invoke(cli, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert read_config(out)["results"]["steps"] == 4
    assert "nothing left to train: the run has trained" in result.output
    # Nothing trained, nothing saved: the checkpoint stays the one `generate` last chose.
    assert {path.name: path.stat().st_mtime_ns for path in checkpoint} == before
    assert "is as it was: nothing was trained or saved" in result.output
    assert "(4 steps," in result.output and "e.g. --max-steps 8" in result.output
    # The resumed run found the token cache entry of the first: the book was encoded once.
    assert "cached:" in result.output
    assert len(list((Path(os.environ["CHARLM_CACHE"]) / "tokens").iterdir())) == 1
    result = runner.invoke(cli, ["train", "--resume", str(out), "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    assert read_config(out)["results"]["steps"] == 6
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "train_loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    result = runner.invoke(cli, ["train", "--resume", str(out), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "drop --out" in result.output


@pytest.mark.parametrize("left", ["nothing", "a half-written save", "an older best"])
def test_a_best_left_behind_by_a_stop_between_the_two_saves_is_saved_again(tmp_path, left):
    # An improvement saves the last checkpoint (its state naming the step the best), then
    # best/: a kill between the two leaves best/ missing, half written or at an older step.
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 2, encoding="utf-8")
    out = tmp_path / "run"
    args = "--batch-size 4 --seq-len 8 --hidden 16 --layers 1 --eval-every 2 --device cpu"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(book), "--out", str(out), "--max-steps", "4",
                                 "--lr", "0.01", *args.split()])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_training_state(out).meta["best_step"] == 4  # the last evaluation improved
    best = out / "best"
    if left == "nothing":
        for path in best.iterdir():
            path.unlink()
        best.rmdir()
    elif left == "a half-written save":
        (best / "config.json").rename(best / ".config.json.x1y2z3.tmp")
    else:
        config = read_config(best)
        config["results"]["steps"] = 2
        (best / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = runner.invoke(cli, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "was behind the last checkpoint" in " ".join(result.output.split())
    assert read_config(best)["results"]["steps"] == 4
    saved, last = load_checkpoint(best).model.state_dict(), load_checkpoint(out).model.state_dict()
    assert all(torch.equal(saved[name], last[name]) for name in last)
    assert not [p.name for p in best.iterdir() if p.name.endswith(".tmp")]


def _trained_then_resumed(tmp_path, first: list[str], again: list[str]):
    """A small run on TEXT twice with the options `first`, then `--resume` with `again`: the
    first run's results, and what the resumed run said (its lines joined, however wrapped)."""
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 2, encoding="utf-8")
    out = tmp_path / "run"
    small = "--batch-size 4 --seq-len 8 --hidden 16 --layers 1 --device cpu".split()
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(book), "--out", str(out), *small, *first])
    assert result.exit_code == 0, result.output
    trained = read_config(out)["results"]
    result = runner.invoke(cli, ["train", "--resume", str(out), *again])
    assert result.exit_code == 0, result.output
    assert read_config(out)["results"]["steps"] == trained["steps"]  # nothing more trained
    return trained, " ".join(result.output.split())


@pytest.mark.slow
def test_a_run_that_ended_with_its_epochs_says_so_when_resumed(tmp_path):
    trained, message = _trained_then_resumed(tmp_path, ["--epochs", "3"], [])
    # Each epoch starts at a random offset, which may leave out a batch: the run did all of
    # its 3 epochs in fewer steps than 3 full ones.
    assert trained["stopped_by"] == "epochs" and trained["epochs"] < 3
    assert "nothing left to train" in message and "all of --epochs 3; give more" in message


@pytest.mark.slow
def test_resuming_a_run_that_used_its_time_says_what_to_give(tmp_path):
    # Epochs enough that the clock, not the epochs, ends the run on however fast a machine.
    first = ["--max-time", "1s", "--epochs", "1000"]
    trained, message = _trained_then_resumed(tmp_path, first, ["--max-time", "1s"])
    assert trained["stopped_by"] == "max_time"
    steps = trained["steps"]
    assert f"({steps:,} step{'' if steps == 1 else 's'}, " in message
    suggested = re.search(
        r"--max-time 1s counts that time; give a longer one, e.g. "
        r"--max-time (\S+) for 1s more",
        message,
    )
    assert suggested and parse_duration(suggested.group(1)) >= 2.0, message


@pytest.mark.slow
def test_a_resumed_run_keeps_its_model_tokenizer_and_text(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 2, encoding="utf-8")
    out = tmp_path / "run"
    small = "--batch-size 4 --seq-len 8 --hidden 16 --layers 1 --device cpu".split()
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(book), "--out", str(out), *small, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    for changed in (["--hidden", "32"], ["--model", "gru"], ["--val-fraction", "0.3"],
                    ["--tokenizer", "word"], ["--tokenizer-option", "lowercase=true"]):  # fmt: skip
        result = runner.invoke(cli, ["train", "--resume", str(out), "--max-steps", "4", *changed])
        assert result.exit_code == 2, result.output
        assert f"so {changed[0]} cannot change" in result.output
    # The same text under another name is the same book; other text is refused.
    moved = tmp_path / "moved.txt"
    moved.write_bytes(book.read_bytes())
    result = runner.invoke(cli, ["train", "--resume", str(out), str(moved), "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    other = tmp_path / "other.txt"
    other.write_text("".join(sorted(TEXT * 2)), encoding="utf-8")  # the same characters
    result = runner.invoke(cli, ["train", "--resume", str(out), str(other), "--max-steps", "4"])
    assert result.exit_code == 1 and "are not the text" in result.output
    assert read_config(out)["results"]["steps"] == 3


def test_sigterm_before_the_first_step_leaves_nothing_behind(tmp_path, monkeypatch):
    # SIGTERM while the run is being set up (its directory and lock already claimed): it
    # ends as Ctrl-C would, undoing the claim, instead of killing the process where it stood.
    from charlm.training.inputs import RunInputs

    build = RunInputs.build_model

    def terminated_while_building(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(RunInputs, "build_model", terminated_while_building)
    # Should the command not take SIGTERM over, this handler does, not the default (which
    # would kill the test run itself).
    unhandled = []

    def guard(*_):
        unhandled.append(True)

    previous = signal.signal(signal.SIGTERM, guard)
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 4, encoding="utf-8")
    out = tmp_path / "run"
    try:
        result = CliRunner().invoke(
            cli, ["train", str(book), "--out", str(out), "--hidden", "8", "--batch-size", "4",
                  "--seq-len", "16", "--device", "cpu"],
        )  # fmt: skip
        handler_after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not unhandled
    assert result.exit_code == 143 and result.stderr.endswith("Terminated.\n"), result.output
    assert not out.exists()
    assert handler_after is guard  # put back
