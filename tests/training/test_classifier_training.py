"""Training a classifier end to end: from scratch, from language models, and its surface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import charlm
from charlm.cli import cli
from charlm.corpus import read_examples
from charlm.data import DataOptions, ExampleIds, LabelSet
from charlm.errors import ConfigError
from charlm.models import classifier_log_posterior
from charlm.models.posteriors import posterior
from charlm.sampling.classify import encode_texts
from charlm.sampling.evaluation import evaluate_examples
from charlm.training import TrainConfig, train_book
from charlm.training.config import RunCounters, Validation
from charlm.training.feeds import class_weights
from charlm.training.loop import improves
from charlm.training.schedules import discriminative_groups, set_lr
from tests.helpers import Messages, single_thread, write_labelled_names

TINY = {"hidden_size": 16, "embed_size": 8, "num_layers": 1, "dropout": 0.0}
LABELLED = DataOptions(labels="files", examples="lines", val_fraction=0.1, test_fraction=0.1)


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def fit(names, out, *, model=None, init_from=None, steps=120, data=LABELLED, **training):
    training = TrainConfig(batch_size=8, lr=0.02, max_steps=steps, epochs=50, seed=1, **training)
    return train_book(
        names, out=out, model={**TINY, "task": "classify", **(model or {})}, training=training,
        data=data, device="cpu", init_from=init_from,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    names = write_labelled_names(root / "names")
    return names, fit(names, root / "model", model={"bidirectional": True})


def test_a_classifier_learns_two_alphabets_and_classifies_after_loading(trained):
    names, run = trained
    sampler = charlm.load(run.checkpoint, device="cpu")
    assert sampler.is_classifier and sampler.labels == ["ab", "xyz"]
    found = sampler.classify(["Abba", "Xyzzy", "Bab", "Zyx"], top_k=1)
    assert [c.label for c in found] == ["ab", "xyz", "ab", "xyz"]
    assert 0.5 < found[0].labels[0].probability <= 1.0


def test_a_classifier_keeps_its_most_accurate_evaluation(trained):
    names, run = trained
    log = [json.loads(line) for line in (run.checkpoint / "metrics.jsonl").open()]
    evaluations = [r for r in log if "val_accuracy" in r]
    assert evaluations
    # Fewest wrong labels first; the loss decides between equally accurate evaluations.
    kept = min(evaluations, key=lambda r: (-r["val_accuracy"], r["val_loss"]))
    assert run.result.best_step == kept["step"]
    assert run.result.best_val_accuracy == pytest.approx(kept["val_accuracy"])


def test_more_accuracy_beats_a_lower_loss_and_the_loss_breaks_ties():
    best = RunCounters(best_val=0.5, best_error=0.2)
    assert improves(Validation(loss=0.7, error=0.1), best)  # the loss rose: still kept
    assert not improves(Validation(loss=0.3, error=0.25), best)
    assert improves(Validation(loss=0.4, error=0.2), best)
    assert not improves(Validation(loss=0.6, error=0.2), best)
    # A language model has no labels to get wrong: its loss alone decides.
    assert improves(Validation(loss=0.4), RunCounters(best_val=0.5))
    assert not improves(Validation(loss=0.6), RunCounters(best_val=0.5))


def test_evaluate_reports_the_classification_without_nats(trained):
    names, run = trained
    sampler = charlm.load(run.checkpoint, device="cpu")
    examples = read_examples(names, labels="files", examples="lines")
    evaluation = evaluate_examples(sampler, examples)
    assert evaluation.nats_per_char is None and evaluation.accuracy > 0.95
    assert evaluation.confusion.sum() == len(examples)


def test_generating_from_a_classifier_is_one_clear_error(trained):
    _, run = trained
    sampler = charlm.load(run.checkpoint, device="cpu")
    with pytest.raises(ConfigError, match="classifier"):
        sampler.generate("A", length=5)
    result = CliRunner().invoke(cli, ["generate", str(run.checkpoint), "--device", "cpu"])
    assert result.exit_code != 0 and "classifier" in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_cli_classifies_and_evaluates_a_classifier(trained):
    names, run = trained
    result = CliRunner().invoke(cli, ["classify", str(run.checkpoint), "Xyzy", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "> Xyzy" and "xyz" in lines[1]  # the best label first
    result = CliRunner().invoke(cli, ["evaluate", str(run.checkpoint), str(names / "ab.txt"),
                                      str(names / "xyz.txt"), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "accuracy 1.0000" in result.stdout and "nats" not in result.stdout


@pytest.mark.slow  # trains two language models, then a classifier from them
def test_init_from_forward_and_backward_lms_fine_tunes(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    text = DataOptions(val_fraction=0.1)
    lm_training = TrainConfig(batch_size=4, seq_len=8, max_steps=5, seed=1)
    lm = {**TINY, "cell": "lstm"}
    corpus = [str(names / "ab.txt"), str(names / "xyz.txt")]
    ahead = train_book(corpus, out=tmp_path / "fwd", model=lm, training=lm_training, data=text,
                       device="cpu")  # fmt: skip
    back = train_book(corpus, out=tmp_path / "bwd", model=lm, training=lm_training,
                      data=DataOptions(val_fraction=0.1, reverse=True), device="cpu")  # fmt: skip
    run = fit(names, tmp_path / "clf", model={"bidirectional": True},
              init_from=[ahead.checkpoint, back.checkpoint], steps=60)  # fmt: skip
    sampler = charlm.load(run.checkpoint, device="cpu")
    assert sampler.is_classifier
    saved = charlm.checkpoint.read_config(run.checkpoint)
    assert saved["data"]["init_backward_from"] == str(back.checkpoint)
    assert saved["training"]["lr_decay_per_layer"] == 2.6  # the rate it took, recorded
    with pytest.raises(ConfigError, match="backward language model"):
        fit(names, tmp_path / "wrong", model={"bidirectional": True},
            init_from=[ahead.checkpoint, ahead.checkpoint])  # fmt: skip
    # A classifier reads forwards: a backward LM alone cannot start it, nor can it be reversed.
    with pytest.raises(ConfigError, match="must be a forward language model"):
        fit(names, tmp_path / "backwards", init_from=back.checkpoint)
    with pytest.raises(ConfigError, match="a classifier reads its examples forwards"):
        train_book(names, out=tmp_path / "reversed", model={**TINY, "task": "classify"},
                   data=DataOptions(labels="files", examples="lines", reverse=True))  # fmt: skip


def test_language_models_of_other_tokens_cannot_share_one_embedding(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    more = tmp_path / "more.txt"
    more.write_text("Qaq\nQuxy\n" * 20, encoding="utf-8")
    corpus = [names / "ab.txt", names / "xyz.txt"]
    lm_training = TrainConfig(batch_size=4, seq_len=8, max_steps=1)
    models = {}
    for name, books, reverse in (("fwd", corpus, False), ("bwd", [*corpus, more], True)):
        models[name] = train_book(
            [str(book) for book in books], out=tmp_path / name, model=TINY,
            training=lm_training, data=DataOptions(val_fraction=0.1, reverse=reverse),
            device="cpu",
        ).checkpoint  # fmt: skip
    with pytest.raises(ConfigError, match="reads other tokens than"):
        fit(names, tmp_path / "clf", model={"bidirectional": True},
            init_from=[models["fwd"], models["bwd"]])  # fmt: skip


def test_task_classify_needs_labels(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    with pytest.raises(ConfigError, match="--task classify trains on labelled examples"):
        fit(names, tmp_path / "m", data=DataOptions(examples="lines"))


def test_balanced_weights_make_each_label_weigh_alike():
    weights = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert torch.allclose(weights * torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0]))
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_discriminative_rates_and_unfreezing_from_the_top():
    layers = [[torch.nn.Parameter(torch.zeros(1))] for _ in range(3)]
    optimizer = torch.optim.Adam(discriminative_groups(layers, 2.0), lr=1.0)
    set_lr(optimizer, 0.4)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.2, 0.4]
    set_lr(optimizer, 0.4, trainable=1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.0, 0.0, 0.4]


def test_an_alphabet_fine_tunes_at_ulmfits_rates_and_words_at_one_rate():
    assert TrainConfig().decay_per_layer(87) == 2.6  # the names: 86 symbols and the end
    assert TrainConfig().decay_per_layer(19_537) == 1.0  # MR's words
    assert TrainConfig(lr_decay_per_layer=3.0).decay_per_layer(19_537) == 3.0
    with pytest.raises(ConfigError, match="at least 1"):
        TrainConfig(lr_decay_per_layer=0.5)


def test_reversed_examples_read_backwards():
    examples = ExampleIds.from_lists([[1, 2], [3, 4, 5]], labels=[0, 1])
    back = examples.reversed()
    assert [list(back.example(i)) for i in range(2)] == [[5, 4, 3], [2, 1]]
    assert list(back.labels) == [1, 0]


def test_classify_moves_a_classifier_to_the_prior_asked_for(trained):
    _, run = trained
    # Without class weights (the default) the scores hold the training shares.
    saved = charlm.checkpoint.read_config(run.checkpoint)["classifier"]
    assert saved == {"prior": "learned", "generative": "generative"}
    sampler = charlm.load(run.checkpoint, device="cpu")
    sampler.generative = None  # its own scores, without its language model (test_kept_lm.py)
    sampler.label_set = LabelSet(sampler.labels, [3, 1])  # shares of 3/4 and 1/4
    texts = ["Ab", "Xy", "Abxy"]
    encoded = encode_texts(sampler.tokenizer, texts, None)
    with torch.inference_mode():
        raw = classifier_log_posterior(sampler.model, encoded, sampler.end_id, sampler.device)
    shares = np.log([0.75, 0.25])
    np.testing.assert_allclose(sampler.label_log_posterior(texts), raw, atol=1e-9)
    uniform = sampler.label_log_posterior(texts, prior="uniform")
    np.testing.assert_allclose(uniform, posterior(raw, -shares), atol=1e-9)
    sampler.classifier_prior = "uniform"  # as trained with balanced weights
    np.testing.assert_allclose(sampler.label_log_posterior(texts, prior="uniform"), raw, atol=1e-9)
    learned = sampler.label_log_posterior(texts, prior="learned")
    np.testing.assert_allclose(learned, posterior(raw, shares), atol=1e-9)


def test_balanced_weights_are_recorded_as_a_uniform_prior(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    run = fit(names, tmp_path / "model", steps=2, class_weights="balanced")
    assert charlm.checkpoint.read_config(run.checkpoint)["classifier"]["prior"] == "uniform"
    assert charlm.load(run.checkpoint, device="cpu").classifier_prior == "uniform"


def write_reviews(root):
    """Two labels of short sentences, a file each, as MR is laid out."""
    root.mkdir()
    good = ["what a warm and funny film", "the best thing i saw all year", "a joy to watch"]
    bad = ["a dull and lifeless mess", "i left before the end of it", "the worst plot in years"]
    for label, lines in (("pos", good), ("neg", bad)):
        (root / f"{label}.txt").write_text("\n".join(lines * 4) + "\n", encoding="utf-8")
    return root


def test_a_classifier_reads_words_of_sentences_and_characters_of_names(tmp_path, trained):
    reviews = write_reviews(tmp_path / "reviews")
    data = DataOptions(labels="files", examples="lines", val_fraction=0, test_fraction=0)
    run = fit(reviews, tmp_path / "model", steps=2, data=data)
    words = charlm.load(run.checkpoint, device="cpu")
    assert words.tokenizer.name == "word"
    # A classifier of words takes its own defaults where none is given (TINY's sizes are).
    config = words.model.config
    assert (config.bidirectional, config.pooling, config.embed_dropout) == (True, "max", 0.5)
    assert (config.hidden_size, config.embed_size) == (TINY["hidden_size"], TINY["embed_size"])
    names, named = trained  # names: characters
    assert charlm.load(named.checkpoint, device="cpu").tokenizer.name == "char"
    # Naming one wins; a language model of examples keeps characters.
    chars = train_book(
        reviews,
        out=tmp_path / "chars",
        tokenizer="char",
        model={**TINY, "task": "classify"},
        data=data,
        device="cpu",
        training=TrainConfig(batch_size=8, max_steps=2),
    )
    read_as_chars = charlm.load(chars.checkpoint, device="cpu")
    assert read_as_chars.tokenizer.name == "char"
    config = read_as_chars.model.config
    assert (config.bidirectional, config.pooling, config.embed_dropout) == (True, "concat", 0.2)
    lm = train_book(reviews, out=tmp_path / "lm", model=TINY, data=data, device="cpu",
                    training=TrainConfig(batch_size=8, max_steps=2))  # fmt: skip
    assert charlm.load(lm.checkpoint, device="cpu").tokenizer.name == "char"


def test_a_classifier_of_words_from_a_word_lm_regularises_as_one_in_the_lms_shape(tmp_path):
    reviews = write_reviews(tmp_path / "reviews")
    text = tmp_path / "sentences.txt"
    text.write_text("".join(p.read_text(encoding="utf-8") for p in sorted(reviews.iterdir())))
    lm = train_book(text, out=tmp_path / "lm", model=TINY, tokenizer="word", device="cpu",
                    data=DataOptions(val_fraction=0.1, test_fraction=0),
                    training=TrainConfig(batch_size=2, seq_len=4, max_steps=2))  # fmt: skip
    data = DataOptions(labels="files", examples="lines", val_fraction=0, test_fraction=0)
    heard = Messages()
    run = train_book(
        reviews, out=tmp_path / "model", model={"task": "classify"}, data=data, device="cpu",
        init_from=lm.checkpoint, training=TrainConfig(batch_size=8, max_steps=2),
        reporter=heard,
    )  # fmt: skip
    config = charlm.load(run.checkpoint, device="cpu").model.config
    # One set of defaults for a classifier of words, from scratch or from a language model.
    assert (config.pooling, config.embed_dropout) == ("max", 0.5)
    assert (config.hidden_size, config.embed_size) == (TINY["hidden_size"], TINY["embed_size"])
    said = next(line for line in heard.lines if line.startswith("a classifier of words"))
    assert "--embed-dropout 0.5" in said and "--hidden" not in said
