"""Sampling from models of examples: one example per sample, labels, scoring, classifying."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charlm.corpus import ExampleSet
from charlm.data import DataOptions, LabelSet
from charlm.errors import ConfigError, CorpusError, UnknownTokenError
from charlm.models import ModelConfig, build_model
from charlm.sampling import Sampler, SamplingOptions, evaluate_examples, load, plot_confusion
from charlm.sampling.evaluation import LONGEST_TICK_LABEL, ExampleEvaluation, _tick_label
from charlm.tokenizers.char import CharTokenizer
from charlm.training import TrainConfig, train_book
from tests.helpers import single_thread, write_labelled_names

LETTERS = CharTokenizer(list("ABXYZabxyz"))


def untrained(labels: LabelSet | None, seed: int = 0) -> Sampler:
    """A small model of examples straight from its initialisation: fast, and random enough."""
    torch.manual_seed(seed)
    config = ModelConfig(
        LETTERS.vocab_size + 1, hidden_size=16, embed_size=8, num_layers=1, end_token=True,
        num_labels=len(labels) if labels else 0,
    )  # fmt: skip
    return Sampler(build_model(config), LETTERS, label_set=labels)


@pytest.fixture
def fresh() -> Sampler:
    return untrained(LabelSet(["ab", "xyz"], [28, 40]))


@pytest.fixture(scope="module")
def names_dir(tmp_path_factory):
    return write_labelled_names(tmp_path_factory.mktemp("names"))


@pytest.fixture(scope="module")
def sampler(names_dir, tmp_path_factory):
    """A tiny model of two labels with their own alphabets: ab (28 names), xyz (40 names)."""
    with single_thread():
        trained = train_book(
            names_dir,
            out=tmp_path_factory.mktemp("model"),
            model={"hidden_size": 32, "embed_size": 8, "num_layers": 1, "dropout": 0.0},
            data=DataOptions(labels="files", val_fraction=0.0),
            training=TrainConfig(batch_size=8, lr=0.02, max_steps=150, epochs=500),
            device="cpu",
            overwrite=True,
        )
    return load(trained.checkpoint, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.mark.slow
def test_each_sample_is_one_example_of_the_label_asked_for(sampler):
    assert sampler.labels == ["ab", "xyz"]
    names = sampler.generate(label="xyz", num_samples=20, seed=1, temperature=0.5)
    assert all(name and set(name.lower()) <= set("xyz") for name in names)
    for sample in sampler.samples(label="ab", num_samples=5, seed=2, temperature=0.5):
        assert sample.token_ids[-1] == sampler.end_id  # ended by the end token
        assert "\n" not in sample.text and set(sample.text.lower()) <= set("ab")


def test_streamed_examples_join_to_the_generated_one(fresh):
    for seed in range(3):
        streamed = "".join(fresh.stream(label="ab", seed=seed))
        assert streamed == fresh.generate(label="ab", seed=seed)


def test_a_prefix_starts_the_example(fresh):
    assert fresh.generate("Xy", label="xyz", seed=1).startswith("Xy")


def test_a_samples_log_probability_is_its_score_given_the_label(fresh):
    for sample in fresh.samples(label="xyz", seed=3, num_samples=4):
        assert sample.token_ids[-1] == fresh.end_id  # each ended by its end token
        score = fresh.score(sample.text, label="xyz")
        assert score.num_tokens == len(sample.text) + 1  # the end token is scored too
        assert -sample.log_probability == pytest.approx(score.cross_entropy * score.num_tokens)


def test_log_likelihoods_score_every_text_under_every_label_at_once(fresh):
    texts = ["Abab", "Zyx", "Ba", "Xxyz"]
    table = fresh.log_likelihoods(texts, batch_size=3)
    for row, text in enumerate(texts):
        for column, label in enumerate(fresh.labels):
            score = fresh.score(text, label=label)
            assert table[row, column] == pytest.approx(-score.cross_entropy * score.num_tokens)


@pytest.mark.slow
def test_classify_ranks_the_labels_by_bayes_rule(sampler):
    results = sampler.classify(["Abba", "Zyzzx"], top_k=None)
    assert [r.label for r in results] == ["ab", "xyz"]
    for result in results:
        assert sum(score.probability for score in result.labels) == pytest.approx(1)
        probabilities = [score.probability for score in result.labels]
        assert probabilities == sorted(probabilities, reverse=True)
    assert len(sampler.classify(["Abba"], top_k=1)[0].labels) == 1
    assert sampler.classify(["Abba"])[0].to_dict()["labels"][0].keys() == {"label", "score"}
    generated = sampler.classify(text for text in ["Abba", "Zyzzx"])  # read once, used twice
    assert [r.label for r in generated] == ["ab", "xyz"]


def test_the_prior_moves_an_undecided_text(fresh):
    # Whatever the text, the learned prior multiplies the odds of xyz against ab by 40 / 28,
    # the ratio of their training names, over the odds with a uniform prior.
    [learned] = fresh.classify(["Abz"], top_k=None)
    [uniform] = fresh.classify(["Abz"], top_k=None, prior="uniform")
    share = {s.label: s.probability for s in learned.labels}
    even = {s.label: s.probability for s in uniform.labels}
    odds, even_odds = share["xyz"] / share["ab"], even["xyz"] / even["ab"]
    assert odds == pytest.approx(even_odds * 40 / 28)


def test_an_unknown_or_missing_label_is_one_line_naming_the_labels(fresh):
    with pytest.raises(ConfigError, match=r"unknown label 'abc' .*the labels are: ab, xyz$"):
        fresh.generate(label="abc")
    with pytest.raises(ConfigError, match="choose one of: ab, xyz"):
        fresh.generate()
    with pytest.raises(ConfigError, match="beam search"):
        fresh.generate(label="ab", beam_width=2)
    with pytest.raises(ConfigError, match="non-empty"):
        fresh.classify(["Ab", "  "])
    with pytest.raises(ConfigError, match="names each of them"):
        Sampler(fresh.model, LETTERS)  # a labelled model needs its labels


@pytest.mark.slow
def test_evaluation_scores_and_classifies_labelled_examples(sampler):
    examples = ExampleSet(["Abab", "Bba", "Xyzy", "Zzx", "Baba"], ["ab", "ab", "xyz", "xyz", "xyz"])
    evaluation = evaluate_examples(sampler, examples)
    assert evaluation.accuracy == pytest.approx(0.8)  # Baba is no xyz name
    assert evaluation.confusion.tolist() == [[2, 0], [1, 2]]
    assert evaluation.per_label["ab"]["precision"] == pytest.approx(2 / 3)
    assert evaluation.per_label["xyz"]["recall"] == pytest.approx(2 / 3)
    assert evaluation.top3_accuracy == 1.0
    table = sampler.log_likelihoods(examples.texts)
    given = [table[i, sampler.labels.index(label)] for i, label in enumerate(examples.labels)]
    symbols = sum(len(t) + 1 for t in examples.texts)
    assert evaluation.nats_per_char == pytest.approx(-sum(given) / symbols)
    assert set(evaluation.to_dict()) >= {
        "accuracy", "macro_f1", "top3_accuracy", "nats_per_char", "per_label"
    }  # fmt: skip
    with pytest.raises(CorpusError, match="not trained on: qq"):
        evaluate_examples(sampler, ExampleSet(["Ab"], ["qq"]))


def test_unlabelled_examples_are_scored_summing_over_the_labels(fresh):
    evaluation = evaluate_examples(fresh, ExampleSet(["Abab", "Xyz"]))
    table = fresh.log_likelihoods(["Abab", "Xyz"]) + fresh.label_set.log_prior()
    marginal = np.log(np.exp(table).sum(axis=1))
    assert evaluation.accuracy is None
    assert evaluation.nats_per_char == pytest.approx(-marginal.sum() / (5 + 4))


@pytest.mark.slow
def test_the_confusion_matrix_is_drawn(fresh, tmp_path):
    examples = ExampleSet(["Abab", "Zzx"], ["ab", "xyz"])
    path = plot_confusion(evaluate_examples(fresh, examples), tmp_path / "c.png")
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_long_and_foreign_labels_fit_the_confusion_plot(tmp_path, recwarn):
    from matplotlib.image import imread

    long = "a label that describes its class in more words than fit"
    evaluation = ExampleEvaluation(
        examples=4, nats_per_char=None, seconds=0.0, labels=[long, "x", "日本語のラベル"],
        accuracy=0.5, macro_f1=0.5, confusion=np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]]),
    )  # fmt: skip
    path = plot_confusion(evaluation, tmp_path / "long.png")
    assert not [w for w in recwarn if "missing from" in str(w.message)]  # no line per glyph
    dark = (imread(path)[..., :3] < 0.5).any(axis=-1)
    # Nothing is cut at the figure's edges: every label and axis title fits inside.
    assert not (dark[:, :3].any() or dark[:, -3:].any() or dark[:3].any() or dark[-3:].any())
    assert _tick_label(long).endswith("…") and len(_tick_label(long)) == LONGEST_TICK_LABEL


def test_a_model_without_labels_refuses_them():
    plain = untrained(None)
    assert plain.labels == [] and isinstance(plain.generate(seed=1), str)
    with pytest.raises(ConfigError, match="trained without labels"):
        plain.generate(label="ab")
    with pytest.raises(ConfigError, match="no labels to classify by"):
        plain.classify(["Ab"])
    assert plain.log_likelihoods(["Ab", "Xyz"]).shape == (2, 1)
    assert plain.score("Ab").num_tokens == 3


@pytest.mark.slow
def test_a_labelled_checkpoint_loads_with_its_labels(names_dir, tmp_path):
    trained = train_book(
        names_dir,
        out=tmp_path / "m",
        model={"hidden_size": 8, "embed_size": 4, "num_layers": 1},
        data=DataOptions(labels="files", val_fraction=0.0),
        training=TrainConfig(batch_size=8, max_steps=1),
        device="cpu",
    )
    loaded = load(trained.checkpoint, device="cpu")
    assert loaded.labels == ["ab", "xyz"] and loaded.label_set.counts == [28, 40]


def test_the_label_is_a_sampling_option(fresh):
    options = SamplingOptions(label="xyz", seed=4, temperature=0.5)
    assert fresh.generate(options=options) == fresh.generate(label="xyz", seed=4, temperature=0.5)
    with pytest.raises(ConfigError, match="label must be a non-empty string"):
        SamplingOptions(label="")
    assert SamplingOptions.from_dict({"label": "ab"}).to_dict()["label"] == "ab"


def test_a_repetition_penalty_covers_the_end_token_too(fresh):
    # The penalty's mask spans the model's whole vocabulary, the end token included.
    assert isinstance(fresh.generate(label="ab", seed=1, repetition_penalty=1.3), str)


def test_drawings_of_different_labels_stepped_together_each_give_their_own_text():
    from charlm.sampling.batch import Batch
    from charlm.sampling.request import make_request

    sampler = untrained(LabelSet(["ab", "xyz"], [28, 40]), seed=3)
    asked = [("ab", 1), ("xyz", 2), ("ab", 5), ("xyz", 7)]
    batch = Batch(sampler)
    drawings = [
        batch.add(make_request("", SamplingOptions(label=label, seed=seed, length=40)))
        for label, seed in asked
    ]
    assert batch.rows == len(asked)
    while batch:
        batch.step()
    together = [drawing.samples()[0].text for drawing in drawings]
    alone = [sampler.generate(label=label, seed=seed, length=40) for label, seed in asked]
    assert together == alone
    assert len(set(alone)) > 1  # the labels and seeds made different examples


def test_classifying_many_texts_names_the_one_with_unseen_characters(fresh):
    with pytest.raises(UnknownTokenError, match="^the text 'Xy日本' has 2 characters") as caught:
        fresh.classify(["Abab", "Xy日本"])
    assert caught.value.where == "the text 'Xy日本'" and caught.value.summary
    long = "ab" * 40 + "日"
    with pytest.raises(UnknownTokenError, match="^the text 'abab.{35}…' has 1 character"):
        fresh.classify([long])
