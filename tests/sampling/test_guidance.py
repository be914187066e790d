"""Label guidance: samples steered toward their label by the model's own posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charlm.data import LabelSet
from charlm.errors import ConfigError
from charlm.sampling import SamplingOptions
from charlm.sampling.batch import Batch
from charlm.sampling.guidance import LabelGuide
from charlm.sampling.request import make_request
from tests.helpers import single_thread
from tests.sampling.test_labels import untrained

LABELS = LabelSet(["ab", "xyz"], [28, 40])


@pytest.fixture
def fresh():
    with single_thread():
        yield untrained(LABELS)


def test_the_guided_scores_follow_the_formula():
    # Two samples, three labels, four tokens, after a prefix that made label 2 likelier.
    torch.manual_seed(0)
    logits = torch.randn(2 * 3, 4)
    log_joint = torch.tensor([0.5, 0.3, 0.2]).log() + torch.tensor([0.0, 0.0, 1.0])
    guide = LabelGuide(label=1, log_joint=log_joint, samples=2, scale=1.5)
    conditional, guided = guide.logits(logits)

    log_probs = logits.log_softmax(-1).view(2, 3, 4)
    weights = log_joint.softmax(-1)  # p(label | prefix)
    for n in range(2):
        marginal = (weights[:, None] * log_probs[n].exp()).sum(0).log()
        own = log_probs[n, 1]
        torch.testing.assert_close(conditional[n], own)
        torch.testing.assert_close(guided[n], own + 1.5 * (own - marginal))


def test_a_drawn_token_moves_each_samples_posterior_by_bayes_rule():
    torch.manual_seed(1)
    logits = torch.randn(2 * 2, 3)
    prior = torch.tensor([0.25, 0.75]).log()
    guide = LabelGuide(label=0, log_joint=prior, samples=2, scale=1.0)
    guide.logits(logits)
    network_tokens = guide.advance(torch.tensor([2, 0]))
    assert network_tokens.tolist() == [2, 2, 0, 0]  # every label's row reads its sample's token
    log_probs = logits.log_softmax(-1).view(2, 2, 3)
    for n, token in enumerate([2, 0]):
        expected = (prior + log_probs[n, :, token]).log_softmax(-1)
        torch.testing.assert_close(guide.log_posterior()[n], expected)


def test_no_guidance_is_the_plain_conditional_sample(fresh):
    plain = fresh.generate(label="xyz", seed=3, num_samples=8, length=30)
    assert fresh.generate(label="xyz", seed=3, num_samples=8, length=30, guidance=0) == plain


@pytest.mark.parametrize("label", ["ab", "xyz"])
def test_guided_samples_read_more_like_their_label(fresh, label):
    """The model's own p(label | sample) grows with the guidance scale."""
    column = fresh.labels.index(label)
    mean_posterior = []
    for scale in (0.0, 1.0, 3.0):
        texts = fresh.generate(label=label, seed=1, num_samples=200, length=30, guidance=scale)
        texts = [text for text in texts if text]
        posterior = np.exp(fresh.label_log_posterior(texts)[:, column])
        mean_posterior.append(posterior.mean())
    assert mean_posterior[0] < mean_posterior[1] < mean_posterior[2]


def test_a_guided_sample_reports_the_models_own_probability(fresh):
    for sample in fresh.samples(label="ab", seed=2, num_samples=4, guidance=2.0):
        score = fresh.score(sample.text, label="ab")
        assert -sample.log_probability == pytest.approx(score.cross_entropy * score.num_tokens)


def test_a_guided_prefix_starts_the_example_and_streams_as_generated(fresh):
    for seed in range(3):
        streamed = "".join(fresh.stream("Xy", label="xyz", seed=seed, guidance=2.0))
        generated = fresh.generate("Xy", label="xyz", seed=seed, guidance=2.0)
        assert generated == "Xy" + streamed


def test_a_guided_drawing_stepped_beside_others_gives_its_own_text(fresh):
    asked = [
        SamplingOptions(label="ab", seed=1, length=40),
        SamplingOptions(label="xyz", seed=2, length=40, guidance=2.0, num_samples=3),
        SamplingOptions(label="ab", seed=5, length=40, guidance=1.0),
    ]
    batch = Batch(fresh)
    drawings = [batch.add(make_request("", options)) for options in asked]
    assert batch.rows == 1 + 3 * 2 + 1 * 2  # a guided sample steps one row per label
    assert [fresh.network_rows(options) for options in asked] == [1, 6, 2]
    while batch:
        batch.step()
    together = [[sample.text for sample in drawing.samples()] for drawing in drawings]
    alone = [[sample.text for sample in fresh.samples(options=options)] for options in asked]
    assert together == alone


def test_guidance_needs_a_labelled_model_and_sampling():
    with pytest.raises(ConfigError, match="guidance must be >= 0"):
        SamplingOptions(guidance=-1)
    with pytest.raises(ConfigError, match="guidance applies to sampling, not to beam search"):
        SamplingOptions(guidance=1, beam_width=2)
    with single_thread():
        unlabelled = untrained(None)
    with pytest.raises(ConfigError, match="needs a model trained on labelled examples"):
        unlabelled.generate(guidance=1.0, seed=1)
