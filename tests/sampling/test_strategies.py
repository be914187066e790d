"""The per-token step: each option keeps to its promise, and draws follow the distribution."""

import math

import pytest
import torch

from charlm.sampling import SamplingOptions, sample_next
from charlm.sampling.strategies import Uniforms, choose, draw, process_logits

VOCAB = 40


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(8, VOCAB, generator=torch.Generator().manual_seed(0)) * 2


def draws(logits: torch.Tensor, options: SamplingOptions, steps: int = 300) -> torch.Tensor:
    """(steps, rows) ids drawn independently from the same logits."""
    uniforms = Uniforms(list(range(len(logits))), torch.device("cpu"))
    return torch.stack([choose(logits, options, uniforms.next()) for _ in range(steps)])


def test_temperature_zero_is_argmax(logits):
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, 0.0, top_k=3, top_p=0.5), logits.argmax(-1))
    assert torch.equal(sample_next(logits, 0.0, min_p=0.5), logits.argmax(-1))


def test_sample_next_is_reproducible_with_a_seeded_generator(logits):
    first = sample_next(logits, 1.0, torch.Generator().manual_seed(4), top_k=5)
    again = sample_next(logits, 1.0, torch.Generator().manual_seed(4), top_k=5)
    assert torch.equal(first, again)


def test_a_tiny_temperature_approaches_argmax(logits):
    drawn = draws(logits, SamplingOptions(temperature=1e-4), steps=50)
    assert (drawn == logits.argmax(-1)).all()


@pytest.mark.slow
def test_top_k_never_emits_a_token_outside_the_top_k(logits):
    drawn = draws(logits, SamplingOptions(temperature=2.0, top_k=3))
    top3 = logits.topk(3, dim=-1).indices
    for row in range(len(logits)):
        assert set(drawn[:, row].tolist()) <= set(top3[row].tolist())
        assert len(set(drawn[:, row].tolist())) > 1  # it still samples among them


def nucleus(row: torch.Tensor, top_p: float) -> set[int]:
    """The smallest set of most likely tokens whose probability reaches top_p (in float64)."""
    probs = row.double().softmax(-1)
    order = probs.argsort(descending=True).tolist()
    kept, mass = set(), 0.0
    for token in order:
        kept.add(token)
        mass += probs[token].item()
        if mass >= top_p:
            return kept
    return kept


@pytest.mark.parametrize("top_p", [0.3, 0.8])
@pytest.mark.slow
def test_top_p_never_emits_a_token_outside_the_nucleus(logits, top_p):
    # nucleus() reads the model's own probabilities: temperature 1, not the default 0.8
    drawn = draws(logits, SamplingOptions(temperature=1.0, top_p=top_p), steps=400)
    for row in range(len(logits)):
        allowed = nucleus(logits[row], top_p)
        assert set(drawn[:, row].tolist()) <= allowed
        if len(allowed) <= 3:  # a small nucleus is fully visited in 400 draws
            assert set(drawn[:, row].tolist()) == allowed


def test_top_p_keeps_the_most_likely_token_even_when_it_alone_exceeds_p():
    logits = torch.tensor([[5.0, 0.0, 0.0]])
    processed = process_logits(logits, SamplingOptions(temperature=1.0, top_p=0.01))
    assert processed[0, 0] == 5.0 and torch.isinf(processed[0, 1:]).all()


def kept(processed: torch.Tensor) -> list[set[int]]:
    """Per row, the tokens that can still be drawn."""
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in processed]


def min_p_set(row: torch.Tensor, min_p: float) -> set[int]:
    """The tokens at least min_p times as likely as the most likely one (in float64)."""
    probs = row.double().softmax(-1)
    return set((probs >= min_p * probs.max()).nonzero().flatten().tolist())


def test_min_p_keeps_exactly_the_tokens_near_enough_the_most_likely_one():
    # probabilities 8 : 4 : 2 : 1.9 : 1 (over 16.9); min_p 0.25 keeps p >= 2/16.9
    logits = torch.tensor([[8.0, 4.0, 2.0, 1.9, 1.0]]).log()
    processed = process_logits(logits, SamplingOptions(temperature=1.0, min_p=0.25))
    assert kept(processed) == [{0, 1, 2}]
    assert torch.equal(processed[0, :3], logits[0, :3])  # the kept ones are left as they were
    only_best = process_logits(logits, SamplingOptions(temperature=1.0, min_p=1.0))
    assert kept(only_best) == [{0}]


@pytest.mark.parametrize("min_p", [0.01, 0.1, 0.3, 0.9])
def test_min_p_on_random_logits_matches_the_definition(logits, min_p):
    processed = process_logits(logits, SamplingOptions(temperature=1.0, min_p=min_p))
    assert kept(processed) == [min_p_set(row, min_p) for row in logits]


def test_min_p_is_applied_after_temperature():
    # at temperature 1 token 1 is 0.1 as likely as token 0; at temperature 2, sqrt(0.1) = 0.32
    logits = torch.tensor([[0.0, math.log(0.1)]])
    assert kept(process_logits(logits, SamplingOptions(temperature=1.0, min_p=0.2))) == [{0}]
    assert kept(process_logits(logits, SamplingOptions(temperature=2.0, min_p=0.2))) == [{0, 1}]


@pytest.mark.parametrize("temperature", [1e30, 1e40, 1e300])
def test_top_k_and_min_p_keep_to_their_sets_at_a_huge_temperature(temperature):
    # Divided by such a temperature the logits underflow into ties; the filters must not.
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -3.0]])
    top_one = SamplingOptions(temperature=temperature, top_k=1)
    assert kept(process_logits(logits, top_one)) == [{0}]
    assert kept(process_logits(logits, SamplingOptions(temperature=temperature, min_p=1.0))) == [
        {0}
    ]
    assert kept(process_logits(logits, SamplingOptions(temperature=temperature, min_p=0.5))) == [
        {0, 1, 2, 3, 4}  # (p_i / p_max ** 1/T: all near 1)
    ]


@pytest.mark.parametrize("other", [{"top_k": 4}, {"top_p": 0.6}, {"top_k": 6, "top_p": 0.9}])
def test_min_p_combines_with_top_k_and_top_p_as_an_intersection(logits, other):
    both = kept(process_logits(logits, SamplingOptions(temperature=1.5, min_p=0.15, **other)))
    alone = kept(process_logits(logits, SamplingOptions(temperature=1.5, min_p=0.15)))
    others = kept(process_logits(logits, SamplingOptions(temperature=1.5, **other)))
    assert both == [a & b for a, b in zip(alone, others, strict=True)]


def test_min_p_draws_only_kept_tokens_and_all_of_them(logits):
    drawn = draws(logits, SamplingOptions(temperature=1.0, min_p=0.3), steps=400)
    for row in range(len(logits)):
        allowed = min_p_set(logits[row], 0.3)
        assert set(drawn[:, row].tolist()) <= allowed
        if len(allowed) <= 3:  # a small kept set is fully visited in 400 draws
            assert set(drawn[:, row].tolist()) == allowed


def test_min_p_zero_changes_nothing(logits):
    off = process_logits(logits, SamplingOptions(temperature=1.0, min_p=0.0))
    assert torch.equal(off, logits)


def test_repetition_penalty_lowers_the_probability_of_seen_tokens(logits):
    seen = torch.zeros_like(logits)
    seen[:, :10] = 1.0
    before = logits.softmax(-1)
    penalised = SamplingOptions(temperature=1.0, repetition_penalty=1.5)  # the penalty alone
    after = process_logits(logits, penalised, seen).softmax(-1)
    assert (after[:, :10] < before[:, :10]).all()
    assert (after[:, 10:] > before[:, 10:]).all()
    # relative to each other, seen tokens keep their odds; against unseen ones they lose 1.5x
    ratio = (after[:, 0] / after[:, 20]) / (before[:, 0] / before[:, 20])
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / 1.5))
    assert torch.equal(logits, process_logits(logits, SamplingOptions(temperature=1.0), seen))


def test_draws_follow_the_softmax_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(4000, -1)
    uniforms = Uniforms(list(range(4000)), torch.device("cpu"))
    counts = torch.bincount(draw(logits, uniforms.next()), minlength=4).double()
    expected = logits[0].double().softmax(-1) * 4000
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 16.27  # 3 degrees of freedom, p = 0.001


@pytest.mark.parametrize("temperature", [1.0, 0.8, 2.0])
def test_tokens_whose_logits_overflow_share_the_draw_at_any_temperature(temperature):
    # A model whose logits overflow (half precision, damaged weights) gives +inf to a few
    # tokens: those share the draw, whatever the temperature; the finite ones get nothing.
    logits = torch.tensor([[0.0, math.inf, 1.0, math.inf, -2.0]])
    options = SamplingOptions(temperature=temperature)
    drawn = {choose(logits, options, torch.tensor([[u]])).item() for u in (0.05, 0.5, 0.95)}
    assert drawn == {1, 3}


@pytest.mark.parametrize("u", [1.0, 2.0**-24])
def test_extreme_random_numbers_never_pick_an_impossible_token(u):
    logits = torch.tensor([[-math.inf, 0.0, 1.0, -math.inf]])
    assert draw(logits, torch.tensor([[u]])).item() in (1, 2)


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": -0.1},
        {"temperature": math.nan},
        {"top_k": 0},
        {"top_k": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"repetition_penalty": 0.0},
        {"min_p": -0.1},
        {"min_p": 1.5},
        {"min_p": math.nan},
    ],
)
def test_invalid_options_raise_value_error(settings):
    with pytest.raises(ValueError):
        SamplingOptions(**settings)


def test_each_row_of_random_numbers_depends_only_on_its_seed():
    together = Uniforms([5, 6, 7], torch.device("cpu"))
    alone = Uniforms([6], torch.device("cpu"))
    for _ in range(300):  # across the boundary of a drawn block
        row = together.next()[1]
        assert torch.equal(row, alone.next()[0])
        assert 0 < row.item() <= 1
