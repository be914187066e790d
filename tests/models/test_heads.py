"""The adaptive softmax: a proper distribution, training, perplexity, sampling, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from charlm.checkpoint import load_checkpoint, save_checkpoint
from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.sampling import Sampler
from charlm.tokenizers import get_tokenizer_class
from charlm.training import TrainConfig, evaluate, train
from tests.helpers import TINY_TRAIN_ARGS

CPU = torch.device("cpu")
VOCAB = 40
CUTOFFS = [8, 20]


def adaptive_model(seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = dict(embed_size=8, hidden_size=16, num_layers=1, dropout=0.0) | options
    return build_model(ModelConfig(VOCAB, softmax="adaptive", cutoffs=CUTOFFS, **config))


def zipf_ids(length: int = 3000, seed: int = 0) -> np.ndarray:
    """A repeating pattern over a Zipf-like vocabulary: frequent ids first, as tokenizers do."""
    rng = np.random.default_rng(seed)
    probs = 1.0 / np.arange(1, VOCAB + 1)
    pattern = rng.choice(VOCAB, 97, p=probs / probs.sum())
    return np.tile(pattern, length // len(pattern) + 1)[:length].astype(np.int64)


def test_scores_are_log_probabilities_and_the_loss_picks_the_targets():
    model = adaptive_model().eval()
    x = torch.randint(0, VOCAB, (3, 7))
    y = torch.randint(0, VOCAB, (3, 7))
    with torch.no_grad():
        log_probs, _ = model(x)
        nll, _ = model(x, targets=y)
    assert log_probs.shape == (3, 7, VOCAB) and nll.shape == (3, 7)
    assert torch.allclose(log_probs.logsumexp(-1), torch.zeros(3, 7), atol=1e-5)
    picked = -log_probs.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(nll, picked, atol=1e-5)


def test_full_softmax_loss_is_the_cross_entropy_of_its_logits():
    torch.manual_seed(0)
    model = build_model(ModelConfig(VOCAB, embed_size=8, hidden_size=16, num_layers=1)).eval()
    x, y = torch.randint(0, VOCAB, (2, 5)), torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        logits, _ = model(x)
        nll, _ = model(x, targets=y)
    expected = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), y.flatten(), reduction="none"
    )
    assert torch.allclose(nll.flatten(), expected, atol=1e-6)


@pytest.mark.slow
def test_training_with_the_adaptive_softmax_lowers_the_loss():
    ids = zipf_ids()
    model = adaptive_model()
    before = evaluate(model, ids, batch_size=4, seq_len=20, device=CPU)
    config = TrainConfig(batch_size=4, seq_len=20, epochs=50, lr=1e-2, max_steps=60)
    result = train(model, ids, None, config, device=CPU)
    after = evaluate(model, ids, batch_size=4, seq_len=20, device=CPU)
    assert math.isfinite(result.train_loss)
    assert after < before - 0.5


@pytest.mark.slow
def test_evaluate_gives_the_exp_of_the_mean_negative_log_likelihood():
    ids = zipf_ids(400)
    model = adaptive_model().eval()
    loss = evaluate(model, ids, batch_size=1, seq_len=50, device=CPU)
    with torch.no_grad():
        log_probs, _ = model(torch.as_tensor(ids[:-1]).unsqueeze(0))
    nll = -log_probs[0].gather(-1, torch.as_tensor(ids[1:]).unsqueeze(-1)).mean()
    assert loss == pytest.approx(float(nll), rel=1e-5)


def word_setup():
    text = " ".join(f"w{i % 13} w{i % 29}" for i in range(400)) + "\n"
    tokenizer = get_tokenizer_class("word").train(text, split="spaces")
    return text, tokenizer


@pytest.mark.slow
def test_sampling_and_scoring_work_with_the_adaptive_softmax():
    text, tokenizer = word_setup()
    torch.manual_seed(0)
    config = ModelConfig(
        tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=1, softmax="adaptive",
        cutoffs=[10, 25],
    )  # fmt: skip
    sampler = Sampler(build_model(config), tokenizer)
    sample = sampler.samples("w1 w2", 12, seed=3)[0]
    assert len(sample.token_ids) == 12
    assert all(lp <= 0 for lp in sample.token_log_probs)
    assert sampler.generate("w1", 10, seed=3) == sampler.generate("w1", 10, seed=3)
    score = sampler.score(text[:200])
    ids = tokenizer.encode_array(text[:200])
    # The same number from the training-side loss (first token after the newline primer).
    inputs = np.concatenate([tokenizer.encode_array("\n"), ids[:-1]])
    with torch.no_grad():
        nll, _ = sampler.model(
            torch.as_tensor(inputs).unsqueeze(0), targets=torch.as_tensor(ids)[None]
        )
    assert score.cross_entropy == pytest.approx(float(nll.mean()), rel=1e-5)


def test_an_adaptive_checkpoint_round_trips(tmp_path):
    _, tokenizer = word_setup()
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=1,
                         softmax="adaptive", cutoffs=[10, 25])  # fmt: skip
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "ck", model, tokenizer)
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())["model"]
    assert saved["softmax"] == "adaptive" and saved["cutoffs"] == [10, 25]
    loaded = load_checkpoint(tmp_path / "ck").model
    x = torch.randint(0, tokenizer.vocab_size, (2, 6))
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])


def test_default_cutoffs_are_kept_below_the_vocabulary_size_and_recorded():
    assert ModelConfig(5000, softmax="adaptive").cutoffs == [2000]
    assert ModelConfig(33_280, softmax="adaptive").cutoffs == [2000, 10000]
    assert ModelConfig(100).cutoffs is None  # full softmax


@pytest.mark.parametrize(
    "options, message",
    [
        ({"vocab_size": 65}, "needs a vocabulary larger than its first cutoff"),
        ({"vocab_size": 100, "cutoffs": [50, 100]}, "below the vocabulary size"),
        ({"vocab_size": 100, "cutoffs": [50, 20]}, "increasing"),
        (
            {"vocab_size": 100, "cutoffs": [10], "tie_weights": True, "embed_size": 512},
            "--tie-weights needs --softmax full",
        ),  # fmt: skip
    ],
)
def test_bad_adaptive_settings_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(softmax="adaptive", **options)


def test_cutoffs_without_the_adaptive_softmax_is_an_error():
    with pytest.raises(ConfigError, match="--softmax adaptive only"):
        ModelConfig(100, cutoffs=[10])


def test_cli_adaptive_softmax_on_a_char_vocabulary_is_one_line(tiny_book, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["train", str(tiny_book), "--out", str(tmp_path / "ck"), "--softmax", "adaptive",
         "--batch-size", "4", "--seq-len", "10"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "use --softmax full" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_cli_trains_and_records_an_adaptive_softmax(tmp_path):
    text, _ = word_setup()
    book = tmp_path / "words.txt"
    book.write_text(text * 3, encoding="utf-8")
    out = tmp_path / "ck"
    args = ["train", str(book), "--out", str(out), "--tokenizer", "word", "--tokenizer-option",
            "split=spaces", "--softmax", "adaptive", "--cutoffs", "10,25",
            *TINY_TRAIN_ARGS, "--seq-len", "10",
            "--max-steps", "3"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["softmax"] == "adaptive" and model["cutoffs"] == [10, 25]
    bad = CliRunner().invoke(cli, [*args[:-2], "--max-steps", "1", "--cutoffs", "ten"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
