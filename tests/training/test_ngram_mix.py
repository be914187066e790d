"""`charlm train --ngram N`: the n-gram model saved beside each checkpoint, its weight fitted
on the validation text, and scoring (Python and `classify --models`) with the mixture."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import charlm.training.run as run_module
from charlm import load
from charlm.checkpoint import CONFIG_NAME, attach_ngram, load_checkpoint, prune_checkpoint
from charlm.errors import CheckpointError
from charlm.models.losses import token_log_probs
from charlm.models.ngram import NgramModel, mix
from tests.helpers import TINY_TRAIN_ARGS, one_error_line, run_cli, single_thread


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple:
    """A tiny model trained 30 steps with a 4-gram mixed in: (its directory, the book)."""
    root = tmp_path_factory.mktemp("ngram")
    book = root / "book.txt"
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and the dog ran to the park while it rained".split()
    book.write_text("\n".join(" ".join(rng.choice(words, 10)) for _ in range(300)))
    with single_thread():
        result = run_cli("train", book, "--out", root / "m", *TINY_TRAIN_ARGS,
                         "--max-steps", "30", "--ngram", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a 4-gram model of the training text mixed in" in result.stderr
    return root / "m", book


def copied(checkpoint, to):
    """A copy of a checkpoint's files, to damage without harming the module's model."""
    to.mkdir()
    for path in checkpoint.iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to


def test_each_checkpoint_keeps_its_ngram_and_its_own_weight(mixed) -> None:
    directory, _ = mixed
    for where in (directory, directory / "best"):
        section = json.loads((where / CONFIG_NAME).read_text())["ngram"]
        assert section["order"] == 4 and 0 < section["weight"] < 1
        assert (where / section["file"]).is_file()
        checkpoint = load_checkpoint(where)
        assert checkpoint.ngram.order == 4
        assert checkpoint.ngram_weight == section["weight"]


def test_score_mixes_the_network_and_the_ngram_token_by_token(mixed) -> None:
    directory, book = mixed
    text = "the dog sat on the mat while it rained"
    sampler = load(directory, device="cpu")
    alone = load(directory, device="cpu", ngram=False)
    assert alone.ngram is None
    ids = sampler.tokenizer.encode_array(text)
    context = sampler.tokenizer.encode_array("\n")
    inputs = np.concatenate([context, ids[:-1]])
    network = token_log_probs(sampler.model, inputs, ids, None, 64, torch.device("cpu"))
    network = network.numpy()
    counted = sampler.ngram.log_probs(ids, context=context)
    expected = -mix(network, counted, sampler.ngram_weight).sum() / len(text) / math.log(2)
    assert sampler.score(text).bits_per_character == pytest.approx(expected, rel=1e-9)
    assert alone.score(text).bits_per_character == pytest.approx(
        -network.sum() / len(text) / math.log(2), rel=1e-9
    )
    # An undertrained network and a 4-gram of this repetitive text: the mixture is better.
    assert sampler.score(text).bits_per_character < alone.score(text).bits_per_character


def test_classify_models_compares_the_mixtures_or_the_networks(mixed, tmp_path) -> None:
    directory, _ = mixed
    passage = tmp_path / "passage.txt"
    passage.write_text("the cat ran to the park")
    result = run_cli("classify", "--models", directory, directory / "best", "--json",
                     "--file", passage)  # fmt: skip
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.splitlines()[0])
    bits = load(directory, device="cpu").score("the cat ran to the park").bits_per_character
    assert line["labels"][0]["bits_per_character"] == pytest.approx(bits, abs=1e-4)
    result = run_cli("classify", "--models", directory, directory / "best", "--json",
                     "--file", passage, "--no-ngram")  # fmt: skip
    alone = load(directory, device="cpu", ngram=False).score("the cat ran to the park")
    line = json.loads(result.stdout.splitlines()[0])
    assert line["labels"][0]["bits_per_character"] == pytest.approx(
        alone.bits_per_character, abs=1e-4
    )
    assert alone.bits_per_character > bits + 0.01  # the n-gram model was left out


def test_a_new_ngram_replaces_the_old_one_and_damage_is_refused(mixed, tmp_path) -> None:
    directory, _ = mixed
    copy = copied(directory / "best", tmp_path / "copy")
    old = json.loads((copy / CONFIG_NAME).read_text())["ngram"]["file"]
    ids = load_checkpoint(copy).tokenizer.encode_array("the cat sat on the mat " * 5)
    vocab_size = load_checkpoint(copy).model.config.vocab_size
    attach_ngram(copy, NgramModel.fit(ids, vocab_size, 2), 0.5)
    # As a save does, it keeps the replaced file for a reader that has just read the old
    # config; pruning (at the end of a run) removes it.
    assert (copy / old).exists()
    prune_checkpoint(copy)
    assert not (copy / old).exists()
    assert load_checkpoint(copy).ngram.order == 2
    config = json.loads((copy / CONFIG_NAME).read_text())
    config["ngram"]["weight"] = 1.5
    (copy / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="bad ngram section"):
        load_checkpoint(copy)
    config["ngram"]["weight"] = 0.5
    (copy / CONFIG_NAME).write_text(json.dumps(config))
    (copy / config["ngram"]["file"]).unlink()
    with pytest.raises(CheckpointError, match="n-gram file .* is missing"):
        load_checkpoint(copy)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--examples", "lines"], "leave it out with --examples"),
        (["--val-fraction", "0"], "keep a validation split"),
    ],
)
def test_runs_it_cannot_mix_are_refused_in_one_line(tiny_book, tmp_path, extra, message) -> None:
    result = run_cli("train", tiny_book, "--out", tmp_path / "m", *TINY_TRAIN_ARGS,
                     "--max-steps", "2", "--ngram", "3", *extra)  # fmt: skip
    assert result.exit_code != 0
    assert message in one_error_line(result, after_progress=True)
    assert "tokenized" not in result.stderr  # refused before the book was read


@pytest.mark.parametrize("beam_width", [1, 3])
def test_generation_draws_from_the_mixture_it_scores(mixed, beam_width) -> None:
    directory, _ = mixed
    sampler = load(directory, device="cpu")
    alone = load(directory, device="cpu", ngram=False)
    options = {"length": 20, "temperature": 1.0, "seed": 3, "beam_width": beam_width}
    for each in (sampler, alone):
        (sample,) = each.samples(prefix="the dog", **options)
        # Each drawn token's reported log-probability is the one scoring gives it.
        scored = each.score(sample.text, prefix="the dog")
        total = -scored.cross_entropy * scored.num_tokens
        assert sum(sample.token_log_probs) == pytest.approx(total, abs=1e-3)
    # The two draw differently: the mixture is not the network.
    assert sampler.generate(prefix="the dog", **options) != alone.generate(
        prefix="the dog", **options
    )


def test_ngram_counts_linked_from_elsewhere_are_not_read(mixed, tmp_path) -> None:
    directory, _ = mixed
    copy = copied(directory / "best", tmp_path / "copy")
    counts = copy / json.loads((copy / CONFIG_NAME).read_text())["ngram"]["file"]
    counts.rename(tmp_path / "elsewhere.safetensors")
    counts.symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(CheckpointError, match="symbolic link"):
        load_checkpoint(copy)


def test_the_commands_mix_it_in_unless_told_not_to(mixed, tmp_path) -> None:
    directory, _ = mixed
    text = tmp_path / "held-out.txt"
    text.write_text("the dog ran to the park while it rained\n")
    for flag, sampler in (
        ("--ngram", load(directory)),
        ("--no-ngram", load(directory, ngram=False)),
    ):
        result = run_cli("evaluate", directory, text, "--json", flag)
        assert result.exit_code == 0, result.output
        bits = json.loads(result.stdout)["bits_per_character"]
        expected = sampler.score(text.read_text()).bits_per_character
        assert bits == pytest.approx(expected, rel=1e-6)
    drawn = {
        flag: run_cli("generate", directory, "--length", "30", "--seed", "1", flag).stdout
        for flag in ("--ngram", "--no-ngram")
    }
    for flag, ngram in (("--ngram", True), ("--no-ngram", False)):
        expected = load(directory, ngram=ngram).generate(length=30, seed=1)
        assert drawn[flag].rstrip("\n") == expected.rstrip("\n")
    assert drawn["--ngram"] != drawn["--no-ngram"]


def test_the_server_says_which_ngram_each_model_mixes_in(mixed) -> None:
    from charlm.serve.config import ServeConfig
    from charlm.serve.models import load_models

    directory, _ = mixed
    (model,) = load_models([directory], ServeConfig())
    assert model.details["ngram"] == {"order": 4, "weight": model.sampler.ngram_weight}
    (alone,) = load_models([directory], ServeConfig(), ngram=False)
    assert alone.details["ngram"] is None and alone.sampler.ngram is None


def test_a_stop_after_the_last_save_is_said_and_the_resume_adds_what_it_missed(
    mixed, tmp_path, monkeypatch
):
    # Ctrl-C while the n-gram model is fitted, after training's last checkpoint was saved.
    _, book = mixed
    out = tmp_path / "m"
    real = run_module.attach_fitted_ngram

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "attach_fitted_ngram", interrupted)
    with single_thread():
        result = run_cli("train", book, "--out", out, *TINY_TRAIN_ARGS, "--max-steps", "10",
                         "--ngram", "3", "--test-fraction", "0.1")  # fmt: skip
    assert result.exit_code == 130, result.output
    said = " ".join(result.stderr.split())
    assert f"stopped after training: {out} is saved (step 10)" in said
    assert f"charlm train --resume {out} adds them" in said
    saved = json.loads((out / CONFIG_NAME).read_text())
    assert "test_perplexity" in saved and not saved.get("ngram")  # the test ran, then the stop
    monkeypatch.setattr(run_module, "attach_fitted_ngram", real)
    with single_thread():
        resumed = run_cli("train", "--resume", out)
    assert resumed.exit_code == 0, resumed.output
    saved = json.loads((out / CONFIG_NAME).read_text())
    assert saved["results"]["steps"] == 10 and saved["ngram"]["order"] == 3
    assert "a 3-gram model of the training text mixed in" in resumed.stderr
    again = run_cli("train", "--resume", out)  # now nothing is missing: nothing is done
    assert again.exit_code == 0 and "is as it was" in again.stderr
