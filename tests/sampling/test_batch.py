"""Drawings stepped together: each gives the text it gives alone; joining, leaving, cancelling."""

import pytest
import torch

from charlm.models import RNNLM, ModelConfig
from charlm.sampling import Sampler
from charlm.sampling.batch import Batch
from charlm.sampling.options import SamplingOptions
from charlm.sampling.request import make_request
from charlm.sampling.state import join_rows, select_rows
from charlm.tokenizers.char import CharTokenizer

TEXT = "the quick brown fox jumps over the lazy dog.\n"


@pytest.fixture
def rnn() -> Sampler:
    tokenizer = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=24, num_layers=2)
    return Sampler(RNNLM(config), tokenizer)


def request(prefix, length, seed, **options):
    return make_request(prefix, SamplingOptions(length=length, seed=seed, **options))


def drain(batch, texts):
    """Step `batch` until it is empty, collecting each drawing's text per sample."""
    for _ in range(10_000):
        if not batch:
            return texts
        for step in batch.step():
            for piece in step.pieces:
                key = (id(step.drawing), piece.sample)
                texts[key] = texts.get(key, "") + piece.text
    raise AssertionError("the batch never emptied")


DIFFERENT = [
    ("the ", 40, 1, {}),
    ("a long prefix of the lazy dog ", 25, 2, {"temperature": 0.5, "top_k": 5}),
    ("", 60, 3, {"top_p": 0.8, "repetition_penalty": 1.3, "num_samples": 3}),
    ("fox", 50, 4, {"stop": ("o",), "temperature": 0}),
    ("q", 0, 5, {}),
]


def test_each_drawing_of_a_batch_gives_the_text_it_gives_alone(rnn):
    batch = Batch(rnn)
    drawings = [batch.add(request(p, n, s, **o)) for p, n, s, o in DIFFERENT]
    assert batch.rows == 1 + 1 + 3 + 1 + 1
    texts = drain(batch, {})
    for drawing, (prefix, length, seed, options) in zip(drawings, DIFFERENT):
        alone = rnn.generate(prefix, length, seed=seed, **options)
        alone = [alone] if isinstance(alone, str) else alone
        together = [prefix + texts.get((id(drawing), row), "") for row in range(drawing.rows)]
        assert together == alone


def test_a_drawing_that_joins_late_and_one_that_leaves_early_are_unchanged(rnn):
    batch = Batch(rnn)
    long = batch.add(request("the ", 60, 7))
    short = batch.add(request("dog", 5, 8))
    texts = {}
    for _ in range(10):  # short leaves after 5 steps; late joins after 10
        for step in batch.step():
            for piece in step.pieces:
                key = (id(step.drawing), piece.sample)
                texts[key] = texts.get(key, "") + piece.text
    late = batch.add(request("over ", 30, 9, temperature=0.7))
    drain(batch, texts)
    assert "the " + texts[(id(long), 0)] == rnn.generate("the ", 60, seed=7)
    assert "dog" + texts[(id(short), 0)] == rnn.generate("dog", 5, seed=8)
    assert "over " + texts[(id(late), 0)] == rnn.generate("over ", 30, seed=9, temperature=0.7)


def test_a_cancelled_drawing_leaves_at_the_next_step_and_the_others_go_on(rnn):
    batch = Batch(rnn)
    gone = batch.add(request("the ", 1000, 1))
    stays = batch.add(request("the ", 40, 2))
    for _ in range(3):
        batch.step()
    gone.cancelled = True
    steps = batch.step()
    assert [(s.drawing, s.finished, s.pieces) for s in steps if s.drawing is gone] == [
        (gone, True, [])
    ]
    assert gone.steps == 3 and len(batch) == 1
    texts = drain(batch, {})
    assert len(texts[(id(stays), 0)]) == 40 - 4


def test_pieces_carry_the_log_probability_of_their_tokens_and_the_alternatives(rnn):
    pieces = list(rnn.pieces("the ", 30, seed=4, num_samples=2, logprobs=3))
    samples = rnn.samples("the ", 30, seed=4, num_samples=2)
    for row, sample in enumerate(samples):
        mine = [p for p in pieces if p.sample == row]
        assert "".join(p.text for p in mine) == sample.text
        assert [p.log_prob for p in mine] == pytest.approx(sample.token_log_probs)
        for piece in mine:
            assert len(piece.top) == 3
            best = [lp for _, lp in piece.top]
            assert best == sorted(best, reverse=True) and piece.log_prob <= best[0] + 1e-6


def test_pieces_without_probabilities_and_with_a_stop_string_spanning_tokens(rnn):
    plain = list(rnn.pieces("the ", 20, seed=1, logprobs=None))
    assert all(p.log_prob is None and p.top == () for p in plain)
    # A stop string holds text back: the piece that releases it carries all its tokens.
    text = rnn.generate("the ", 200, seed=1, temperature=0.6)[4:]
    stop = text[50:52]
    sample = rnn.samples("the ", 200, seed=1, temperature=0.6, stop=stop)[0]
    pieces = list(rnn.pieces("the ", 200, seed=1, temperature=0.6, stop=stop))
    assert "".join(p.text for p in pieces) == sample.text
    kept = len(sample.text)
    assert sum(p.log_prob for p in pieces) == pytest.approx(sum(sample.token_log_probs[:kept]))


def test_logprobs_out_of_range_is_refused_before_drawing(rnn):
    with pytest.raises(ValueError, match="logprobs"):
        rnn.pieces("a", 5, logprobs=-1)
    with pytest.raises(ValueError, match="logprobs"):
        rnn.pieces("a", 5, logprobs=True)


def test_join_rows_concatenates_plain_and_lstm_states():
    h1, h2 = torch.zeros(2, 1, 3), torch.ones(2, 2, 3)
    assert join_rows(None, h1) is h1
    assert join_rows(h1, h2).shape == (2, 3, 3)
    lstm = join_rows((h1, h1 + 5), (h2, h2 + 5))
    picked = select_rows(lstm, torch.tensor([0, 2]))
    assert picked[0][:, :, 0].tolist() == [[0, 1], [0, 1]]
    assert picked[1][:, :, 0].tolist() == [[5, 6], [5, 6]]
