"""Faults during long runs: SIGKILL at random moments, a full disk, two runs in one directory,
and a device that runs out of memory. Nothing is lost and every failure is one clear line."""

from __future__ import annotations

import errno
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from charlm import checkpoint as ckpt
from charlm.checkpoint import CONFIG_NAME, load_checkpoint, load_training_state, read_config
from charlm.errors import ConfigError
from charlm.sampling import Sampler
from charlm.training import TrainConfig
from charlm.training import loop as training
from charlm.training.metrics_log import read_metrics
from charlm.training.run import train_book
from charlm.training.runlock import LOCK_NAME, RunLockedError, _locked, claim_directory
from tests.helpers import TINY_TRAIN_ARGS, one_error_line, single_thread
from tests.helpers import run_cli as run

TEXT = "the cat sat on the mat. a dog ran in the fog.\n" * 40
SMALL = [*TINY_TRAIN_ARGS, "--threads", "1"]
KILLS = 8


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def start(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "charlm", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def saved_step(out: Path) -> int:
    try:
        return read_config(out)["training_state"]["step"]
    except Exception:  # not saved yet
        return 0


def wait_until(condition, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("the run made no progress")
        time.sleep(0.02)


def check_survivor(out: Path, seed: int) -> int:
    """The checkpoint left by a killed run: it loads, samples and can be resumed."""
    for path in (out, out / ckpt.BEST_NAME):
        if path == out or (path / CONFIG_NAME).is_file():
            loaded = load_checkpoint(path)
            text = Sampler(loaded.model, loaded.tokenizer).generate("the", length=10, seed=seed)
            assert len(text) == 13
    for path in out.iterdir():
        # Under a checkpoint name every file is complete: a save cut off leaves only hidden
        # temporary files, or complete files config.json does not name yet (the next save
        # removes both).
        if path.name.startswith(("weights-", "training-state-")):
            load_file(path)
    return load_training_state(out).step


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_checkpoint(tmp_path, book):
    out = tmp_path / "run"
    rng = random.Random(4)
    first = ["train", book, "--out", out, *SMALL, "--eval-every", "1", "--epochs", "100000"]
    proc = start(*first)
    steps = [0]
    try:
        for kill in range(KILLS):
            wait_until(lambda: saved_step(out) > steps[-1], proc)
            time.sleep(rng.uniform(0.0, 0.25))  # somewhere in a step, an evaluation or a save
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            steps.append(check_survivor(out, seed=kill))
            assert steps[-1] >= steps[-2]
            proc = start("train", "--resume", out, "--device", "cpu", "--threads", "1")
    finally:
        proc.kill()
        proc.wait()
    # The stale lock of the killed runs never blocked a resume; the next complete run
    # removes whatever the killed saves left behind.
    final = run("train", "--resume", out, "--max-steps", saved_step(out) + 2, "--device", "cpu")
    assert final.exit_code == 0, final.output
    names = sorted(p.name.split("-")[0] for p in out.iterdir())
    assert names == [LOCK_NAME, "best", CONFIG_NAME, "metrics.jsonl", "training", "weights"]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, book, monkeypatch):
    out = tmp_path / "run"
    real_save_file = ckpt.save_file
    calls = []

    def fills_the_disk(tensors, filename):
        calls.append(filename)
        if len(calls) < 5:
            return real_save_file(tensors, filename)
        Path(filename).write_bytes(b"\0" * 100)  # part of the file made it, then ENOSPC
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(ckpt, "save_file", fills_the_disk)
    result = run("train", book, "--out", out, *SMALL, "--eval-every", "1", "--max-steps", "20")
    assert result.exit_code == 1
    line = one_error_line(result, after_progress=True)
    assert "no space left on device" in line and "previous checkpoint" in line
    assert "intact" in line
    monkeypatch.undo()
    step = check_survivor(out, seed=0)
    assert step >= 1
    config = read_config(out)
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith(".tmp")]  # no partial file left behind
    assert {n for n in names if n.startswith("weights-")} == {config["weights"]}


def test_an_overwriting_run_that_cannot_save_leaves_the_old_run_whole(tmp_path, book, monkeypatch):
    out = tmp_path / "run"
    args = ["train", book, "--out", out, *SMALL, "--eval-every", "1"]
    assert run(*args, "--max-steps", "3").exit_code == 0
    before = {path: path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    assert out / "best" / CONFIG_NAME in before and out / "metrics.jsonl" in before

    def full_disk(tensors, filename):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    result = run(*args, "--max-steps", "2", "--hidden", "16", "--overwrite")
    assert result.exit_code == 1
    assert "no space left on device" in one_error_line(result, after_progress=True)
    monkeypatch.undo()
    # Its first save failed: the old run's checkpoint, best and metrics log are as they were.
    after = {path: path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    assert after == before
    # Once a new run has saved, nothing of the old run is left beside it.
    assert run(*args, "--max-steps", "2", "--hidden", "16", "--overwrite").exit_code == 0
    assert read_config(out / "best")["model"]["hidden_size"] == 16
    steps = [record["step"] for record in read_metrics(out / "metrics.jsonl")]
    assert steps and max(steps) == 2


@pytest.mark.slow
def test_a_real_write_failure_from_the_kernel_keeps_the_previous_checkpoint(tmp_path, book):
    out = tmp_path / "run"
    assert (
        run("train", book, "--out", out, *SMALL, "--hidden", "64", "--max-steps", "2").exit_code
        == 0
    )
    before = read_config(out)

    def small_files():
        # Files may not grow past 16 kB: the weights (over 80 kB) cannot be written.
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    proc = start(
        "train", "--resume", out, "--max-steps", "4", "--threads", "1", preexec_fn=small_files
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and lines[-1].startswith("Error: File too large"), stderr
    assert "previous checkpoint" in lines[-1]
    assert read_config(out)["weights"] == before["weights"]
    assert check_survivor(out, seed=1) == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# Two runs, one directory -----------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_into_a_live_runs_directory_is_refused(tmp_path, book):
    out = tmp_path / "run"
    assert run("train", book, "--out", out, *SMALL, "--max-steps", "2").exit_code == 0
    with _locked(out):  # as a live `charlm train` holds it
        for extra in ([], ["--overwrite"]):
            result = run("train", book, "--out", out, *SMALL, "--max-steps", "2", *extra)
            assert result.exit_code == 1
            assert "is in use by another charlm train (pid" in one_error_line(result)
        result = run("train", "--resume", out, "--max-steps", "4")
        assert result.exit_code == 1 and "in use" in one_error_line(result)
    assert run("train", "--resume", out, "--max-steps", "4").exit_code == 0


@pytest.mark.slow
def test_a_directory_with_a_model_needs_resume_or_overwrite(tmp_path, book):
    out = tmp_path / "run"
    args = ["train", book, "--out", out, *SMALL, "--eval-every", "1"]
    assert run(*args, "--max-steps", "3", "--seed", "1").exit_code == 0
    first = read_config(out)
    result = run(*args, "--max-steps", "2")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "already holds a trained model" in line and "--resume" in line and "--overwrite" in line
    assert read_config(out) == first  # untouched
    result = run(*args, "--max-steps", "2", "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_config(out)["results"]["steps"] == 2
    result = run("train", "--resume", out, "--overwrite")
    assert result.exit_code == 2 and "drop --overwrite" in one_error_line(result)


@pytest.mark.slow
def test_the_python_api_refuses_and_overwrites_alike(tmp_path, book):
    options = dict(
        out=tmp_path / "run",
        device="cpu",
        training=TrainConfig(batch_size=4, seq_len=8, max_steps=1),
        model={"hidden_size": 8},
    )
    train_book(book, **options)
    with pytest.raises(ConfigError, match="already holds a trained model.*overwrite=True"):
        train_book(book, **options)
    assert train_book(book, overwrite=True, **options).result.steps == 1


def test_a_stale_lock_file_and_a_failed_first_run_leave_no_trouble(tmp_path, book):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("pid 99999 on a machine that crashed\n")
    assert run("train", book, "--out", out, *SMALL, "--max-steps", "1").exit_code == 0
    short = tmp_path / "short.txt"
    short.write_text("too short")
    result = run("train", short, "--out", tmp_path / "new", *SMALL)
    assert result.exit_code == 1 and "too few" in one_error_line(result)
    assert not (tmp_path / "new").exists()  # no empty directory with a lock file in it


def test_a_live_run_keeps_other_runs_out_of_the_folders_inside_it(tmp_path):
    # A live run writes its best below its directory: a run into that folder is refused.
    out = tmp_path / "run"
    with claim_directory(out, config_name="config.json"):
        with pytest.raises(RunLockedError, match=f"{out / 'best'} is inside {out}, which another"):
            with claim_directory(out / "best", config_name="config.json", overwrite=True):
                pass
    with claim_directory(out / "best", config_name="config.json"):  # no run there now
        pass


@pytest.mark.slow
def test_a_live_cli_run_locks_its_directory_until_it_is_killed(tmp_path, book):
    out = tmp_path / "run"
    proc = start("train", book, "--out", out, *SMALL, "--eval-every", "1", "--epochs", "100000")
    try:
        wait_until(lambda: saved_step(out) > 0, proc)
        result = run("train", "--resume", out, "--max-steps", "100")
        assert result.exit_code == 1
        assert f"(pid {proc.pid} on" in one_error_line(result)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = run("train", "--resume", out, "--max-steps", saved_step(out) + 1)
    assert result.exit_code == 0, result.output


# Out of memory ---------------------------------------------------------------------------

OOM_ERRORS = [
    (
        torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "79.19 GiB of which 1.06 GiB is free."
        ),
        "the GPU ran out of memory (it asked for 2.00 GiB more)",
    ),
    (
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 40000000000 bytes. Error code 12"
        ),
        "the device ran out of memory (it asked for 40000000000 bytes more)",
    ),
    (MemoryError(), "the device ran out of memory;"),
]


@pytest.mark.parametrize(("error", "message"), OOM_ERRORS)
def test_running_out_of_memory_while_training_suggests_smaller_batches(
    tmp_path, book, monkeypatch, error, message
):
    real_step = training._Run._train_step

    def step_then_fail(self, batch):
        if self.c.step == 2:
            raise error
        return real_step(self, batch)

    monkeypatch.setattr(training._Run, "_train_step", step_then_fail)
    out = tmp_path / "run"
    result = run("train", book, "--out", out, *SMALL, "--eval-every", "1", "--max-steps", "5")
    assert result.exit_code == 1
    line = one_error_line(result, after_progress=True)
    assert message in line and "--batch-size" in line and "--seq-len" in line
    assert f"the last checkpoint saved is kept in {out}" in line
    load_checkpoint(out)


def test_running_out_of_memory_while_generating_is_one_line(tmp_path, book, monkeypatch):
    out = tmp_path / "run"
    assert run("train", book, "--out", out, *SMALL, "--max-steps", "1").exit_code == 0
    monkeypatch.setattr(Sampler, "step", lambda *a: (_ for _ in ()).throw(OOM_ERRORS[0][0]))
    result = run("generate", out, "--num-samples", "3", "--length", "5")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "ran out of memory" in line and "--num-samples" in line


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory(tmp_path, book, monkeypatch):
    monkeypatch.setattr(
        training._Run, "_train_step", lambda *a: (_ for _ in ()).throw(RuntimeError("a bug"))
    )
    result = run("train", book, "--out", tmp_path / "run", *SMALL)
    assert isinstance(result.exception, RuntimeError)  # a real bug keeps its traceback
