"""Labelled models classifying together: the mean of their log posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from charlm.corpus import ExampleSet
from charlm.data import LabelSet
from charlm.errors import ConfigError, CorpusError
from charlm.sampling import Ensemble, evaluate_examples
from tests.helpers import single_thread
from tests.sampling.test_labels import untrained

TEXTS = ["Abab", "Xyz", "Bzy", "Zab"]


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def test_a_model_with_itself_classifies_as_the_model_alone():
    model = untrained(LabelSet(["ab", "xyz"], [28, 40]))
    alone = model.label_log_posterior(TEXTS)
    twice = Ensemble([model, model]).label_log_posterior(TEXTS)
    np.testing.assert_allclose(twice, alone, atol=1e-9)


def test_the_mean_of_log_posteriors_matches_labels_by_name_and_normalises():
    first = untrained(LabelSet(["ab", "xyz"], [28, 40]), seed=1)
    # The same labels listed the other way round, with other counts: its own prior applies.
    second = untrained(LabelSet(["xyz", "ab"], [10, 30]), seed=2)
    together = Ensemble([first, second])
    expected = (first.label_log_posterior(TEXTS) + second.label_log_posterior(TEXTS)[:, ::-1]) / 2
    expected -= np.log(np.exp(expected).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(together.label_log_posterior(TEXTS), expected, atol=1e-9)
    assert np.exp(together.label_log_posterior(TEXTS)).sum(axis=1) == pytest.approx(1)
    assert together.label_set.names == ["ab", "xyz"]  # the first model's order
    [ranked] = together.classify(["Abab"], top_k=None, prior="uniform")
    uniform = (first.label_log_posterior(["Abab"], prior="uniform")[0] +
               second.label_log_posterior(["Abab"], prior="uniform")[0][::-1]) / 2  # fmt: skip
    best = ["ab", "xyz"][int(np.argmax(uniform))]
    assert ranked.label == best and len(ranked.labels) == 2


def test_models_of_other_labels_or_of_no_labels_are_refused_in_one_line():
    model = untrained(LabelSet(["ab", "xyz"], [28, 40]))
    other = untrained(LabelSet(["ab", "qq"], [28, 40]))
    with pytest.raises(ConfigError, match="in one and not the other: qq, xyz"):
        Ensemble([model, other])
    with pytest.raises(ConfigError, match="trained on labelled examples"):
        Ensemble([model, untrained(None)])
    with pytest.raises(ConfigError, match="at least one"):
        Ensemble([])


def test_an_ensemble_is_evaluated_as_a_classifier():
    model = untrained(LabelSet(["ab", "xyz"], [28, 40]))
    other = untrained(LabelSet(["ab", "xyz"], [28, 40]), seed=3)
    together = Ensemble([model, other])
    examples = ExampleSet(TEXTS, ["ab", "xyz", "xyz", "ab"])
    evaluation = evaluate_examples(together, examples)
    predicted = together.label_log_posterior(TEXTS).argmax(axis=1)
    assert evaluation.accuracy == pytest.approx(np.mean(predicted == [0, 1, 1, 0]))
    assert evaluation.nats_per_char is None  # a mean of posteriors is no probability of text
    with pytest.raises(CorpusError, match="classifier gives no probability of text"):
        evaluate_examples(together, ExampleSet(TEXTS))
