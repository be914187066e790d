"""--resume with a checkpoint from elsewhere: what it names is taken literally and shown, the
cache and corpus directories are this run's, and a damaged training state is one error line
before the first step, never a traceback during the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from charlm.checkpoint import CONFIG_NAME, read_config
from tests.conftest import TINY_TEXT
from tests.helpers import one_error_line, run_cli, single_thread

SMALL = ["--hidden", "16", "--embed", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "8"]
SMALL += ["--device", "cpu", "--threads", "1", "--model", "lstm"]


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture
def run(tmp_path) -> Path:
    """A stopped run: a model with its training state, after 2 steps."""
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    out = tmp_path / "run"
    assert run_cli("train", book, "--out", out, *SMALL, "--max-steps", "2").exit_code == 0
    return out


def edit_config(out: Path, change) -> None:
    config = json.loads((out / CONFIG_NAME).read_text(encoding="utf-8"))
    change(config)
    (out / CONFIG_NAME).write_text(json.dumps(config), encoding="utf-8")


def resume(out: Path):
    return run_cli("train", "--resume", out, "--max-steps", "4")


# What a checkpoint names ---------------------------------------------------------------------


def test_a_resumed_run_says_which_books_it_reads(run, tmp_path):
    result = resume(run)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the display wraps long lines
    assert f"resuming {run}: it reads {tmp_path / 'book.txt'}" in said


@pytest.mark.parametrize("kind", ["glob", "directory", "catalogue name"])
def test_a_stored_glob_directory_or_catalogue_name_is_not_expanded(run, tmp_path, kind):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "id_rsa.txt").write_text("a private key, not a book\n" * 50)
    named = {"glob": str(secrets / "*"), "directory": str(secrets), "catalogue name": "alice"}
    edit_config(run, lambda c: c["data"]["books"][0].update(path=named[kind]))
    result = resume(run)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"names {named[kind]!r} as its book, which is not a file here" in line
    assert "id_rsa" not in result.output


def test_cache_and_corpus_directories_are_this_runs_not_the_checkpoints(run, tmp_path):
    elsewhere = tmp_path / "chosen-by-the-checkpoint"
    edit_config(
        run,
        lambda c: c["data"]["options"].update(
            cache_dir=str(elsewhere / "cache"), corpus_dir=str(elsewhere / "corpora")
        ),
    )
    result = resume(run)
    assert result.exit_code == 0, result.output
    assert not elsewhere.exists()


def test_a_stored_validation_file_that_is_a_device_is_refused(run):
    edit_config(run, lambda c: c["data"]["options"].update(val_file="/dev/zero"))
    result = resume(run)
    assert result.exit_code == 1
    assert "names '/dev/zero' as its validation file" in one_error_line(result)


# A damaged training state --------------------------------------------------------------------


def edit_tensors(out: Path, change) -> None:
    path = out / read_config(out)["training_state"]["file"]
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


NAN, INF = float("nan"), float("inf")


def edit_state(out: Path, change) -> None:
    edit_config(out, lambda c: change(c["training_state"]))


DAMAGE = {
    "moment of the wrong shape": lambda out: edit_tensors(
        out, lambda t: t.update({"optimizer.0.exp_avg": torch.zeros(3)})
    ),
    "moment missing": lambda out: edit_tensors(out, lambda t: t.pop("optimizer.1.exp_avg_sq")),
    "moment for a parameter the model lacks": lambda out: edit_tensors(
        out, lambda t: t.update({"optimizer.99.exp_avg": torch.zeros(3)})
    ),
    "NaN moment": lambda out: edit_tensors(
        out, lambda t: t["optimizer.0.exp_avg"].fill_(float("nan"))
    ),
    "hidden state of the wrong shape": lambda out: edit_tensors(
        out, lambda t: t.update({"hidden.0": torch.zeros(1, 3, 16)})
    ),
    "half an LSTM state": lambda out: edit_tensors(out, lambda t: t.pop("hidden.1")),
    "random state of the wrong size": lambda out: edit_tensors(
        out, lambda t: t.update({"rng.torch": torch.zeros(7, dtype=torch.uint8)})
    ),
    "string step": lambda out: edit_state(out, lambda s: s.update(step="5")),
    "negative batch index": lambda out: edit_state(out, lambda s: s.update(batch_index=-3)),
    "NaN betas": lambda out: edit_state(
        out, lambda s: s["optimizer"]["param_groups"][0].update(betas=[float("nan"), 0.999])
    ),
    "negative learning rate": lambda out: edit_state(
        out, lambda s: s["optimizer"]["param_groups"][0].update(lr=-1.0)
    ),
    "another model's parameters": lambda out: edit_state(
        out, lambda s: s["optimizer"]["param_groups"][0].update(params=[0, 1])
    ),
    "broken loss meter": lambda out: edit_state(out, lambda s: s.update(epoch_meter="x")),
    "NaN gradient sum": lambda out: edit_state(out, lambda s: s["epoch_meter"].__setitem__(1, NAN)),
    "infinite token count": lambda out: edit_state(out, lambda s: s["window"].__setitem__(2, INF)),
    "broken schedule": lambda out: edit_state(out, lambda s: s["schedule"].update(factor=-2)),
    "file name that is not a string": lambda out: edit_state(out, lambda s: s.update(file=5)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_training_state_is_one_line_before_the_first_step(run, damage):
    DAMAGE[damage](run)
    before = read_config(run)
    result = resume(run)
    assert result.exit_code == 1
    line = one_error_line(result, after_progress=True)
    assert "training state" in line and "--init-from" in line or "bad training_state" in line
    assert "step 3" not in result.output  # not one step was taken
    assert read_config(run) == before


def test_a_gradient_norm_that_overflowed_is_no_damage(run):
    # A step whose gradient norm overflowed (clipping survives it) makes the meters' sums
    # +inf, and charlm saves them so: its own checkpoint must resume.
    edit_state(
        run, lambda s: (s["epoch_meter"].__setitem__(1, INF), s["window"].__setitem__(1, INF))
    )
    result = resume(run)
    assert result.exit_code == 0, result.output
