"""Training on examples: the loop on example batches, the checkpoint's labels, resuming."""

from __future__ import annotations

import pytest
import torch

from charlm.checkpoint import load_checkpoint, read_config
from charlm.data import DataOptions
from charlm.errors import ConfigError
from charlm.models import ModelConfig
from charlm.training import TrainConfig, train_book
from tests.helpers import single_thread, write_labelled_names

TINY = {"hidden_size": 24, "embed_size": 8, "num_layers": 1, "dropout": 0.0, "label_size": 4}


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def run(data_dir, out, steps: int = 120, model=None, **data):
    # A constant rate: a run cut short follows the same schedule as a longer one.
    training = TrainConfig(
        batch_size=8, lr=0.02, max_steps=steps, eval_every=40, epochs=500, schedule="constant"
    )
    return train_book(
        data_dir,
        out=out,
        model=TINY if model is None else model,
        data=DataOptions(**({"labels": "files"} | data)),
        training=training,
        device="cpu",
        overwrite=True,
    )


@pytest.mark.slow
def test_a_labelled_model_learns_its_examples_and_saves_the_labels(tmp_path):
    names = write_labelled_names(tmp_path / "names", copies=2)
    trained = run(names, tmp_path / "model", test_fraction=0.1)
    # Five symbols at most per label (letters, the end): an untrained model is near 1/8 each.
    assert trained.result.val_perplexity < 3.5
    assert trained.test_perplexity is not None and trained.labels == ["ab", "xyz"]
    config = read_config(trained.checkpoint)
    assert config["labels"] == {"ab": 44, "xyz": 64}  # (28 - 6 and 40 - 8 held out) x 2
    assert config["model"]["end_token"] and config["model"]["num_labels"] == 2
    examples = config["data"]["examples"]
    assert examples["duplicates"] == 68 and examples["unit"] == "lines"
    loaded = load_checkpoint(trained.best)
    assert loaded.model.config.vocab_size == loaded.tokenizer.vocab_size + 1


@pytest.mark.slow
def test_examples_without_labels_train_a_model_of_one_kind(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    unlabelled = {k: v for k, v in TINY.items() if k != "label_size"}  # refused without labels
    trained = run(
        names, tmp_path / "model", steps=20, model=unlabelled, labels=None, examples="lines"
    )
    config = read_config(trained.checkpoint)
    assert config["model"]["num_labels"] == 0 and config["model"]["end_token"]
    assert "labels" not in config and trained.labels == []


@pytest.mark.slow
def test_a_resumed_run_continues_exactly(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    straight = run(names, tmp_path / "straight", steps=12)
    run(names, tmp_path / "resumed", steps=5)
    resumed = train_book(
        resume=tmp_path / "resumed",
        training=TrainConfig.from_dict(
            {**read_config(tmp_path / "resumed")["training"], "max_steps": 12}
        ),
        device="cpu",
    )
    assert resumed.result.steps == 12
    a = load_checkpoint(straight.checkpoint).model.state_dict()
    b = load_checkpoint(resumed.checkpoint).model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_a_model_of_one_kind_is_not_fine_tuned_on_the_other(tmp_path, tiny_book):
    names = write_labelled_names(tmp_path / "names")
    run(names, tmp_path / "names-model", steps=2)
    with pytest.raises(ConfigError, match="model of short examples"):
        train_book(
            tiny_book,
            out=tmp_path / "tuned",
            init_from=tmp_path / "names-model",
            training=TrainConfig(batch_size=2, seq_len=8, max_steps=1),
            device="cpu",
        )


def test_a_book_run_refuses_a_directory_as_its_validation_text(tmp_path, tiny_book):
    with pytest.raises(ConfigError, match="is a directory"):
        train_book(
            tiny_book, out=tmp_path / "m", data=DataOptions(val_file=str(tmp_path)), device="cpu"
        )


def test_a_model_config_is_taken_whole_but_for_what_the_data_sets(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    # Its vocab_size, end_token and num_labels are the book's defaults: the data replaces them.
    config = ModelConfig(vocab_size=1, **TINY)
    trained = run(names, tmp_path / "model", steps=2, model=config, examples="lines")
    saved = read_config(trained.checkpoint)["model"]
    assert saved["end_token"] and saved["num_labels"] == 2 and saved["hidden_size"] == 24
    with pytest.raises(ConfigError, match="num_labels come from the data"):
        run(names, tmp_path / "other", steps=2, model={**TINY, "num_labels": 3}, examples="lines")


@pytest.mark.slow
def test_a_run_stopped_after_an_epochs_short_last_batch_resumes(tmp_path):
    from safetensors.torch import load_file

    # The epoch's last batch of examples is short (fewer rows than the batch size); a run
    # stopped right after it saved that batch's state, with as few rows, and must resume.
    names = write_labelled_names(tmp_path / "names")
    for steps in range(1, 20):
        out = tmp_path / f"run{steps}"
        run(names, out, steps=steps)
        saved = load_file(out / read_config(out)["training_state"]["file"])
        if saved["hidden.0"].shape[1] < 8:  # the batch size of `run`
            break
    else:
        pytest.fail("no run stopped after a short batch")
    resumed = train_book(resume=out, training={"max_steps": steps + 2}, device="cpu")
    assert resumed.result.steps == steps + 2
