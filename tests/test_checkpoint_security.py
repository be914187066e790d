"""Checkpoints are data: loading one must never run code hidden in it, and nothing in a
checkpoint directory (a link, a FIFO, a hard link) leads charlm to read, write or wait outside it.
"""

import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from charlm.checkpoint import BEST_NAME, CONFIG_NAME, load_checkpoint, read_config, save_checkpoint
from charlm.errors import CheckpointError
from charlm.training.metrics_log import METRICS_LOG_NAME
from charlm.training.runlock import LOCK_NAME
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, one_error_line, run_cli, single_thread, tiny_model


class _Payload:
    """Unpickling this object calls os.system, which would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_a_code_executing_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    # The payload is real: unpickling it does create the file ...
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    # ... but put where a checkpoint's weights belong, it is refused without being run.
    tokenizer, _ = ids_of(TINY_TEXT)
    path = save_checkpoint(tmp_path / "ckpt", tiny_model(tokenizer.vocab_size), tokenizer)
    for weights in path.glob("weights-*.safetensors"):
        weights.write_bytes(payload)
    with pytest.raises(CheckpointError, match="corrupt or not safetensors"):
        load_checkpoint(path)
    assert not marker.exists()


# A checkpoint directory is an untrusted archive (charlm/checkpoint/files.py) ---------------

SMALL = ["--hidden", "16", "--embed", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "8"]
SMALL += ["--device", "cpu", "--threads", "1", "--max-steps", "1", "--eval-every", "1"]
SECRET = "a file of yours that a checkpoint must never touch\n"


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def yours(tmp_path):
    path = tmp_path / "yours.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def trained(tmp_path, book):
    """A run's directory, as a downloaded one would be: a model, its state, best/, a log."""
    out = tmp_path / "run"
    with single_thread():
        assert run_cli("train", book, "--out", out, *SMALL).exit_code == 0
    return out


def refused(result, fragment: str) -> str:
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert fragment in line, line
    return line


def test_a_lock_file_linked_to_your_file_is_never_written(tmp_path, book, yours):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(yours)
    refused(run_cli("train", book, "--out", out, *SMALL), "is a symbolic link")
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(yours, hard / LOCK_NAME)
    refused(run_cli("train", book, "--out", hard, *SMALL), "other hard links")
    assert yours.read_text() == SECRET


def test_a_metrics_log_linked_to_your_file_is_never_rewritten(trained, yours):
    log = trained / METRICS_LOG_NAME
    log.unlink()
    log.symlink_to(yours)
    refused(run_cli("train", "--resume", trained, "--max-steps", "2"), "is a symbolic link")
    book = trained.parent / "book.txt"
    refused(run_cli("train", book, "--out", trained, *SMALL, "--overwrite"), "symbolic link")
    assert yours.read_text() == SECRET


def test_best_linked_to_another_model_leaves_that_model_alone(tmp_path, trained, book):
    other = tmp_path / "other"
    with single_thread():
        assert run_cli("train", book, "--out", other, *SMALL, "--seed", "3").exit_code == 0
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    shutil.rmtree(trained / BEST_NAME)
    (trained / BEST_NAME).symlink_to(other)
    refused(run_cli("train", "--resume", trained, "--max-steps", "3"), "is a symbolic link")
    refused(run_cli("train", book, "--out", trained, *SMALL, "--overwrite"), "symbolic link")
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before


def test_weights_linked_to_another_checkpoint_are_not_read(tmp_path, trained):
    config = read_config(trained)
    weights = trained / config["weights"]
    elsewhere = tmp_path / "elsewhere.safetensors"
    weights.rename(elsewhere)
    weights.symlink_to(elsewhere)
    refused(run_cli("generate", trained, "--length", "5"), "is a symbolic link")
    (trained / CONFIG_NAME).rename(tmp_path / "config.json")
    (trained / CONFIG_NAME).symlink_to(tmp_path / "config.json")
    refused(run_cli("generate", trained, "--length", "5"), "is a symbolic link")


@pytest.mark.slow  # a charlm process of its own for each
@pytest.mark.parametrize("name", ["weights", "training_state", CONFIG_NAME])
def test_a_fifo_in_a_checkpoint_is_refused_at_once(trained, name):
    config = read_config(trained)
    entry = trained / {"weights": config["weights"], CONFIG_NAME: CONFIG_NAME}.get(
        name, config["training_state"]["file"]
    )
    entry.unlink()
    os.mkfifo(entry)  # opening it to read would wait for a writer for ever
    command = ["generate", trained, "--length", "5"]
    if name == "training_state":
        command = ["train", "--resume", trained, "--max-steps", "2"]
    # A process of its own: a read blocked on a FIFO would hang the test runner with it.
    done = subprocess.run(
        [sys.executable, "-m", "charlm", *map(str, command)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("Error:") and "is a FIFO, not a regular file" in done.stderr


def test_float64_weights_that_overflow_float32_are_refused(trained):
    # 1e300 is finite as float64 and passed the check; the model holds float32: infinity.
    path = trained / read_config(trained)["weights"]
    tensors = {k: v.to(torch.float64) for k, v in load_file(path).items()}
    tensors["head.bias"][0] = 1e300
    save_file(tensors, path)
    line = refused(run_cli("generate", trained, "--length", "5"), "NaN or infinite values")
    assert "head.bias" in line
