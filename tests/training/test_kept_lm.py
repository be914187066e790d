"""A pretrained classifier keeps its labelled language model and classifies with it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import charlm
from charlm.checkpoint import read_config
from charlm.cli import cli
from charlm.corpus import read_examples
from charlm.data import DataOptions
from charlm.errors import CheckpointError, ConfigError
from charlm.sampling import evaluate_examples
from charlm.training import TrainConfig, train_book
from tests.helpers import single_thread, write_labelled_names

TINY = {"hidden_size": 16, "embed_size": 8, "num_layers": 1, "dropout": 0.0, "task": "classify"}
LABELLED = DataOptions(labels="files", examples="lines", val_fraction=0.1, test_fraction=0.1)
NAMES = ["Abba", "Xyzzy", "Bab", "Zyx"]


def train_classifier(names, out, **training):
    with single_thread():
        return train_book(
            names, out=out, model=TINY, data=LABELLED, device="cpu", overwrite=True,
            training=TrainConfig(batch_size=8, lr=0.02, seed=1, pretrain_epochs=2,
                                 max_steps=20, epochs=3, **training),
        )  # fmt: skip


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    root = tmp_path_factory.mktemp("kept")
    names = write_labelled_names(root / "names", copies=2)
    return train_classifier(names, root / "model").checkpoint


def test_the_classifier_and_its_lm_classify_by_the_mean_of_their_log_posteriors(hybrid):
    sampler = charlm.load(hybrid, device="cpu")
    both = sampler.label_log_posterior(NAMES, prior="uniform")
    lm = sampler.generative.label_log_posterior(NAMES, prior="uniform")
    sampler.generative = None  # the classifier alone
    alone = sampler.label_log_posterior(NAMES, prior="uniform")
    mean = (alone + lm) / 2
    expected = mean - np.log(np.exp(mean).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(both, expected, rtol=1e-6, atol=1e-9)
    assert not np.allclose(both, alone)  # the language model moved the scores


def test_the_kept_lm_is_a_checkpoint_of_its_own_and_the_classifier_points_to_it(hybrid):
    lm = charlm.load(hybrid / "generative", device="cpu")
    assert not lm.is_classifier and lm.labels == ["ab", "xyz"]
    assert len(lm.generate(label="ab", length=5, seed=0)) <= 5
    classifier = charlm.load(hybrid / "best", device="cpu")
    with pytest.raises(ConfigError, match="its labelled language model can: the checkpoint's"):
        classifier.generate(length=3)


def test_evaluate_names_the_pair(hybrid, tmp_path):
    test = write_labelled_names(tmp_path / "test")
    result = CliRunner().invoke(
        cli, ["evaluate", str(hybrid), str(test), "--labels", "files", "--examples", "lines"]
    )
    assert result.exit_code == 0, result.output
    assert "(classifier with its language model, learned prior" in result.output


@pytest.mark.parametrize("damage", ["missing", "other labels", "a link"])
def test_a_missing_or_foreign_kept_lm_is_a_one_line_error(hybrid, tmp_path, damage):
    copy = shutil.copytree(hybrid / "best", tmp_path / "copy")
    kept = copy / "generative"
    if damage == "missing":
        shutil.rmtree(kept)
        match = "generative: the path does not exist"
    elif damage == "a link":  # to a real model elsewhere: charlm follows no link
        shutil.rmtree(kept)
        kept.symlink_to(hybrid / "generative", target_is_directory=True)
        match = "is a symbolic link"
    else:
        config = read_config(kept)
        config["labels"] = {"xyz": 1, "ab": 1}
        (kept / "config.json").write_text(json.dumps(config), encoding="utf-8")
        match = "is not a language model of the classifier's tokens and labels"
    with pytest.raises(CheckpointError, match=match):
        charlm.load(copy, device="cpu")


def test_without_keep_lm_the_classifier_is_alone_and_a_rerun_leaves_no_old_lm(tmp_path):
    names = write_labelled_names(tmp_path / "names", copies=2)
    out = tmp_path / "model"
    train_classifier(names, out)
    assert (out / "generative").is_dir()
    train_classifier(names, out, keep_lm=False)  # --overwrite the run with a plain one
    assert not (out / "generative").exists() and not (out / "best" / "generative").exists()
    assert "generative" not in read_config(out)["classifier"]
    assert charlm.load(out, device="cpu").generative is None


def test_the_command_line_says_where_the_kept_lm_is_and_it_writes_names(tmp_path):
    names = write_labelled_names(tmp_path / "names", copies=2)
    out = tmp_path / "model"
    args = ["train", names, "--labels", "files", "--examples", "lines", "--task", "classify",
            "--hidden", "16", "--embed", "8", "--pretrain-epochs", "1", "--max-steps", "10",
            "--out", out, "--device", "cpu"]  # fmt: skip
    with single_thread():
        trained = CliRunner().invoke(cli, [str(a) for a in args])
    assert trained.exit_code == 0, trained.output
    kept = out / "generative"
    assert f"which also writes: charlm generate {kept} --label ab" in trained.stderr
    written = CliRunner().invoke(cli, ["generate", str(kept), "--label", "ab", "--seed", "1"])
    assert written.exit_code == 0, written.output
    refused = CliRunner().invoke(cli, ["generate", str(out), "--seed", "1"])
    assert refused.exit_code != 0 and refused.stderr.count("\n") == 1
    assert "its labelled language model can: the checkpoint's `generative` folder" in refused.stderr


def test_a_run_without_validation_keeps_the_lm_beside_its_last_model_only(tmp_path):
    names = write_labelled_names(tmp_path / "names", copies=2)
    out = tmp_path / "model"
    with single_thread():
        train_book(
            names, out=out, model=TINY, device="cpu",
            data=DataOptions(labels="files", examples="lines", val_fraction=0, test_fraction=0),
            training=TrainConfig(batch_size=8, pretrain_epochs=1, max_steps=5, epochs=1),
        )  # fmt: skip
    assert not (out / "best").exists()  # no evaluation chose a model: no copy, no LM in it
    assert charlm.load(out, device="cpu").generative is not None


def test_the_test_line_scores_the_pair_and_validation_the_classifier_alone(tmp_path):
    names = write_labelled_names(tmp_path / "names", copies=2)
    mixed = {"ab": ["Abx", "Bay", "Azb", "Bbz", "Aab", "Bxa"],
             "xyz": ["Xab", "Yba", "Zya", "Xxb", "Yzy", "Zab"]}  # fmt: skip
    for split in ("val", "test"):
        (tmp_path / split).mkdir()
        for label, lines in mixed.items():
            (tmp_path / split / f"{label}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "model"
    data = DataOptions(labels="files", examples="lines", val_file=str(tmp_path / "val"),
                       test_file=str(tmp_path / "test"))  # fmt: skip
    with single_thread():
        run = train_book(
            names, out=out, model=TINY, data=data, device="cpu", overwrite=True,
            training=TrainConfig(batch_size=8, lr=0.02, seed=1, pretrain_epochs=2,
                                 max_steps=6, epochs=3, eval_every=2),
        )  # fmt: skip
    saved = read_config(out)
    # The test line: the last model with its LM, as classify gives it (not the classifier alone).
    test = read_examples(tmp_path / "test", labels="files", examples="lines")
    last = charlm.load(out, device="cpu")
    assert saved["test_accuracy"] == pytest.approx(evaluate_examples(last, test).accuracy)
    last.generative = None
    assert saved["test_accuracy"] != pytest.approx(evaluate_examples(last, test).accuracy)
    # The best evaluation: the classifier alone.
    val = read_examples(tmp_path / "val", labels="files", examples="lines")
    best = charlm.load(out / "best", device="cpu")
    best.generative = None
    assert saved["results"]["best_val_accuracy"] == pytest.approx(
        evaluate_examples(best, val).accuracy
    )
    assert run.result.best_val_accuracy == pytest.approx(saved["results"]["best_val_accuracy"])


def test_a_classifier_trained_on_from_one_that_keeps_an_lm_keeps_it_too(hybrid, tmp_path):
    names = write_labelled_names(tmp_path / "names")  # the same labels, counted anew
    out = tmp_path / "more"
    with single_thread():
        train_book(
            names, out=out, init_from=hybrid, model={"task": "classify"}, data=LABELLED,
            device="cpu", training=TrainConfig(batch_size=8, max_steps=4, epochs=1),
        )  # fmt: skip
    assert read_config(out)["classifier"]["generative"] == "generative"
    before = charlm.load(hybrid, device="cpu").generative
    after = charlm.load(out, device="cpu").generative
    assert after.label_set.counts != before.label_set.counts  # this run's counts
    for name, weight in before.model.state_dict().items():  # the LM itself, unchanged
        assert torch.equal(after.model.state_dict()[name], weight), name


def test_training_on_from_a_classifier_as_a_language_model_is_refused(hybrid, tmp_path):
    names = write_labelled_names(tmp_path / "names")
    args = ["train", str(names), "--labels", "files", "--examples", "lines", "--init-from",
            str(hybrid), "--out", str(tmp_path / "more"), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert f"{hybrid} is a classifier: train on from it with --task classify" in result.stderr
    other = CliRunner().invoke(cli, [*args, "--task", "classify", "--tokenizer", "char"])
    assert other.exit_code == 2 and other.stderr.count("\n") == 1, other.output
    assert "whose layers cannot move to another vocabulary" in other.stderr
