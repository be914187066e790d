"""The metrics log when writing fails (a full disk, a file size limit) or is killed: one error
line naming the log and what is intact, no half record left, no temporary file kept."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from charlm.checkpoint import CONFIG_NAME, files, read_config, save_checkpoint
from charlm.errors import CheckpointError
from charlm.training.metrics_log import MetricsLog, read_metrics
from tests.helpers import TINY_TRAIN_ARGS, ids_of, one_error_line, run_cli, tiny_model

TEXT = "the cat sat on the mat. a dog ran in the fog.\n" * 40
SMALL = [*TINY_TRAIN_ARGS, "--threads", "1"]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def not_added(path: Path) -> str:
    """What a failed append says after its reason."""
    return (
        f"could not add a record to the metrics log {path}; its earlier records and the last "
        "checkpoint saved there are intact"
    )


def disk_fills_while_appending(monkeypatch, after: int = 0) -> None:
    """Each append writes part of its record, then finds the disk full (files.py's os.write
    alone; every other write goes on), once `after` appends have gone through."""
    fake = types.ModuleType("os")
    fake.__dict__.update(os.__dict__)
    calls = {"appends": 0}

    def write(fd: int, data: bytes) -> int:
        calls["appends"] += 1
        if calls["appends"] <= after:
            return os.write(fd, data)
        if len(data) > 1:
            return os.write(fd, data[: len(data) // 2])
        raise ENOSPC

    fake.write = write
    monkeypatch.setattr(files, "os", fake)


def write_log(path: Path, steps) -> None:
    log = MetricsLog(path)
    for step in steps:
        log.write({"step": step, "train_loss": 1.0 / step})


def test_a_full_disk_while_appending_is_one_line_and_takes_the_half_record_back(
    tmp_path, monkeypatch
):
    path = tmp_path / "metrics.jsonl"
    write_log(path, (1, 2))
    before = path.read_bytes()
    log = MetricsLog(path, resume_step=2)
    disk_fills_while_appending(monkeypatch)
    with pytest.raises(CheckpointError) as error:
        log.write({"step": 3, "train_loss": 0.25})
    assert str(error.value) == (f"no space left on device: {not_added(path)}")
    assert path.read_bytes() == before  # the half record written before the failure is gone


def test_a_failed_rewrite_on_resume_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    write_log(path, (1, 2, 3))  # step 3 was logged, then the run was killed before saving it
    before = path.read_bytes()
    real = files.write_atomically

    def full_disk(target, write):
        def part(tmp):
            tmp.write_text('{"step": 1, "tr')
            raise ENOSPC

        real(target, part)

    monkeypatch.setattr(files, "write_atomically", full_disk)
    with pytest.raises(CheckpointError) as error:
        MetricsLog(path, resume_step=2)
    assert str(error.value) == (
        f"no space left on device: could not rewrite the metrics log {path}; the log and the "
        "checkpoint there are as they were"
    )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file


def test_a_failed_commit_says_the_held_records_are_lost_and_drops_the_old_runs_log(
    tmp_path, monkeypatch
):
    path = tmp_path / "metrics.jsonl"
    write_log(path, (7, 8))  # an earlier run's log (--overwrite)
    log = MetricsLog(path, held=True)
    log.write({"step": 1, "train_loss": 1.0})

    def full_disk(target, write):
        raise ENOSPC

    monkeypatch.setattr(files, "write_atomically", full_disk)
    with pytest.raises(CheckpointError) as error:
        log.commit()
    assert str(error.value) == (
        f"no space left on device: could not write the metrics log {path}; the checkpoint just "
        "saved there is intact, but this run's records up to it are lost"
    )
    # Its records would otherwise pass for this run's when it is resumed.
    assert not path.exists()


def test_a_cut_last_line_is_skipped_and_a_resumed_log_drops_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, (1, 2))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"step": 3, "train_lo')  # killed mid-record
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    MetricsLog(path, resume_step=2).write({"step": 3, "train_loss": 0.5})
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    assert path.read_text(encoding="utf-8").endswith("\n")


FILE_SIZE_LIMIT = """
import resource, sys
from charlm.errors import CheckpointError
from charlm.training.metrics_log import MetricsLog

path, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    MetricsLog(path, resume_step=1000)  # a rewrite: the log has a cut last line
except CheckpointError as exc:
    print(exc)
log = MetricsLog(path + ".new")
try:
    for step in range(1, 1000):
        log.write({"step": step, "train_loss": 1.0 / step})
except CheckpointError as exc:
    print(exc)
"""


def test_a_file_size_limit_is_one_line_and_leaves_whole_records(tmp_path):
    # The kernel's own failure: a write past RLIMIT_FSIZE is cut short, then EFBIG.
    path = tmp_path / "metrics.jsonl"
    write_log(path, range(1, 40))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"step": 40, "train_lo')
    before = path.read_bytes()
    limit = 1000
    assert len(before) > limit
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FILE_SIZE_LIMIT), str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    rewrite, append = done.stdout.strip().splitlines()
    assert rewrite == (
        f"File too large: could not rewrite the metrics log {path}; the log and the checkpoint "
        "there are as they were"
    )
    assert path.read_bytes() == before
    new = Path(f"{path}.new")
    assert append == f"File too large: {not_added(new)}"
    text = new.read_text(encoding="utf-8")
    assert text.endswith("\n") and len(text) <= limit
    steps = [json.loads(line)["step"] for line in text.splitlines()]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "metrics.jsonl.new"]


def test_a_full_disk_while_a_run_appends_is_one_error_line(tmp_path, monkeypatch):
    book, out = tmp_path / "book.txt", tmp_path / "run"
    book.write_text(TEXT, encoding="utf-8")
    # The first records are held until the first save (step 1); step 2's append fails.
    disk_fills_while_appending(monkeypatch)
    result = run_cli(
        "train", book, "--out", out, *SMALL, "--eval-every", "1", "--log-every", "1",
        "--max-steps", "5",
    )  # fmt: skip
    assert result.exit_code == 1
    line = one_error_line(result, after_progress=True)
    log = out / "metrics.jsonl"
    assert line == f"Error: no space left on device: {not_added(log)}"
    monkeypatch.undo()
    assert read_config(out)["training_state"]["step"] == 1
    assert [r["step"] for r in read_metrics(log)] == [1, 1]  # a training and an eval record
    assert log.read_bytes().endswith(b"\n")
    assert run_cli("train", "--resume", out, "--max-steps", "3").exit_code == 0
    assert [r["step"] for r in read_metrics(log) if "train_loss" in r] == [1, 2, 3]


def test_a_full_disk_while_a_resumed_run_rewrites_its_log_is_one_error_line(tmp_path, monkeypatch):
    book, out = tmp_path / "book.txt", tmp_path / "run"
    book.write_text(TEXT, encoding="utf-8")
    assert run_cli("train", book, "--out", out, *SMALL, "--max-steps", "2").exit_code == 0
    log = out / "metrics.jsonl"
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"step": 3, "train_lo')  # killed while logging step 3: a rewrite is due
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real = files.write_atomically

    def full_disk(target, write):
        if target.name != "metrics.jsonl":
            return real(target, write)
        raise ENOSPC

    monkeypatch.setattr(files, "write_atomically", full_disk)
    result = run_cli("train", "--resume", out, "--max-steps", "4")
    assert result.exit_code == 1
    assert one_error_line(result, after_progress=True) == (
        f"Error: no space left on device: could not rewrite the metrics log {log}; the log and "
        "the checkpoint there are as they were"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_killed_rewrite_of_the_log_leaves_nothing_after_the_next_save(tmp_path, monkeypatch):
    # SIGKILL in the middle of the rewrite leaves write_atomically's temporary file behind.
    path = tmp_path / "metrics.jsonl"
    write_log(path, (1, 2, 3))
    names = []
    real = files.write_atomically

    def spy(target, write):
        def noted(tmp):
            names.append(tmp.name)
            write(tmp)

        real(target, noted)

    monkeypatch.setattr(files, "write_atomically", spy)
    MetricsLog(path, resume_step=2)
    monkeypatch.undo()
    [left] = [tmp_path / name for name in names if name.startswith(".metrics.jsonl.")]
    left.write_text('{"step": 1}\n{"st')  # what the kill left
    tokenizer, _ = ids_of(TEXT)
    model = tiny_model(tokenizer.vocab_size)
    save_checkpoint(tmp_path, model, tokenizer)
    assert not left.exists()  # "files a killed save left behind are removed by the next save"
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("weights-")} == {
        CONFIG_NAME,
        "metrics.jsonl",
    }
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
