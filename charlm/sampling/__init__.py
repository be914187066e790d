"""Drawing text from a trained model, and scoring text with it.

sampler.py     the Sampler: priming, streaming, scoring
drawing.py     one call's rows while they are drawn: the per-token draw, pieces, probabilities
batch.py       drawings stepped through the network together (one, or a server's many)
options.py     SamplingOptions: every setting of a call, its default and its check, once
request.py     one call: the prefix and its checked options
strategies.py  the per-token step: repetition penalty, temperature, top-k, top-p, draw
stops.py       stop strings
beam.py        beam search
scoring.py     cross-entropy, perplexity, bits per character
classify.py    p(label | text) by Bayes' rule, batched; passages by the book models that fit best
ensemble.py    labelled models classifying together: the mean of their log posteriors
evaluation.py  accuracy, macro-F1, per-label precision/recall, confusion matrix, nats per char
"""

from charlm.sampling.classify import Classification, LabelScore, by_bits_per_character
from charlm.sampling.draft import Sample
from charlm.sampling.drawing import Piece
from charlm.sampling.ensemble import Ensemble
from charlm.sampling.evaluation import (
    ExampleEvaluation,
    evaluate_examples,
    plot_confusion,
    plot_key,
)
from charlm.sampling.options import SamplingOptions
from charlm.sampling.sampler import Sampler, load
from charlm.sampling.scoring import Score
from charlm.sampling.strategies import sample_next

__all__ = [
    "Classification",
    "Ensemble",
    "ExampleEvaluation",
    "LabelScore",
    "Piece",
    "Sample",
    "Sampler",
    "SamplingOptions",
    "Score",
    "by_bits_per_character",
    "evaluate_examples",
    "load",
    "plot_confusion",
    "plot_key",
    "sample_next",
]
