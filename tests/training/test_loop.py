import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from charlm.data import DataOptions
from charlm.models import RNNLM, ModelConfig
from charlm.training import TrainConfig, evaluate, train, train_book
from charlm.training.loop import subnormals_flushed
from tests.conftest import TINY_TEXT, shared_corpus
from tests.helpers import Messages, ids_of, overfit, tiny_model

CPU = torch.device("cpu")


class RecordingModel(RNNLM):
    """Records the state each step starts from, and whether any gradient reaches a state."""

    def __init__(self, config):
        super().__init__(config)
        self.incoming, self.outgoing, self.grad_reached_state = [], [], []

    def forward(self, tokens, state=None, targets=None):
        output, new_state = super().forward(tokens, state, targets=targets)
        if self.training:
            self.incoming.append(state)
            self.outgoing.append(new_state.detach().clone())
            new_state.register_hook(lambda grad: self.grad_reached_state.append(grad))
        return output, new_state


def _recording(vocab_size):
    return RecordingModel(
        ModelConfig(
            vocab_size=vocab_size,
            cell="gru",
            embed_size=8,
            hidden_size=16,
            num_layers=1,
            dropout=0.0,
        )
    )


@pytest.mark.slow
def test_sequential_training_carries_the_state_but_truncates_backprop():
    _, ids = ids_of(TINY_TEXT)
    model = _recording(int(ids.max()) + 1)
    train(model, ids, None, TrainConfig(batch_size=4, seq_len=10, max_steps=5), device=CPU)
    assert model.incoming[0] is None
    for carried, previous_end in zip(model.incoming[1:], model.outgoing):
        assert carried is not None and not carried.requires_grad
        assert torch.equal(carried, previous_end)  # the values continue...
    assert model.grad_reached_state == []  # ...but no backward pass ran into an earlier batch


def test_without_detaching_the_gradient_would_reach_the_previous_batch():
    # The control for the test above: the hook does fire when the graph is not cut.
    _, ids = ids_of(TINY_TEXT)
    model = _recording(int(ids.max()) + 1)
    x = torch.as_tensor(ids[:40].reshape(4, 10))
    _, state = model(x)
    logits, _ = model(x, state)
    logits.sum().backward()
    assert model.grad_reached_state


def test_random_iterator_starts_every_batch_from_a_fresh_state():
    _, ids = ids_of(TINY_TEXT)
    model = _recording(int(ids.max()) + 1)
    config = TrainConfig(batch_size=4, seq_len=10, max_steps=4, iterator="random")
    train(model, ids, None, config, device=CPU)
    assert model.incoming == [None] * 4


def test_evaluate_is_the_mean_cross_entropy_of_every_next_token():
    tokenizer, ids = ids_of(TINY_TEXT[:300])
    model = tiny_model(tokenizer.vocab_size)
    loss = evaluate(model, ids, batch_size=1, seq_len=17, device=CPU)
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(ids[:-1]).unsqueeze(0))
        expected = F.cross_entropy(logits[0], torch.as_tensor(ids[1:])).item()
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_reported_perplexity_is_exp_of_the_mean_cross_entropy():
    tokenizer, ids = ids_of(TINY_TEXT)
    model = tiny_model(tokenizer.vocab_size)
    config = TrainConfig(batch_size=4, seq_len=10, max_steps=3)
    result = train(model, ids[:800], ids[800:], config, device=CPU)
    assert result.val_perplexity == pytest.approx(math.exp(result.val_loss))
    assert result.train_perplexity == pytest.approx(math.exp(result.train_loss))
    assert result.val_loss == pytest.approx(
        evaluate(model, ids[800:], batch_size=4, seq_len=10, device=CPU)
    )


@pytest.mark.slow
def test_an_untrained_model_is_about_as_perplexed_as_the_vocabulary_is_large():
    vocab = 50
    ids = np.random.default_rng(0).integers(0, vocab, 5000)
    model = tiny_model(vocab)
    ppl = math.exp(evaluate(model, ids, batch_size=8, seq_len=50, device=CPU))
    assert 0.8 * vocab < ppl < 1.25 * vocab


@pytest.mark.slow
def test_a_tiny_model_memorises_a_short_text():
    text = "the quick brown fox jumps over the lazy dog. " * 12
    model, tokenizer, result = overfit(text, steps=150)
    assert result.train_perplexity < 1.2
    ids = tokenizer.encode_array(text)
    assert math.exp(evaluate(model, ids, batch_size=1, seq_len=50, device=CPU)) < 1.2


@pytest.mark.slow
def test_max_steps_bounds_the_run_and_the_run_still_ends_evaluated():
    tokenizer, ids = ids_of(TINY_TEXT)
    model = tiny_model(tokenizer.vocab_size)
    config = TrainConfig(batch_size=2, seq_len=10, epochs=100, max_steps=7)
    result = train(model, ids[:1000], ids[1000:], config, device=CPU)
    assert result.steps == 7 and result.stopped_by == "max_steps"
    assert result.val_perplexity is not None


@pytest.mark.slow
def test_max_time_bounds_the_run():
    tokenizer, ids = ids_of(TINY_TEXT)
    model = tiny_model(tokenizer.vocab_size)
    config = TrainConfig(batch_size=2, seq_len=10, epochs=10_000, max_time=0.5)
    result = train(model, ids, None, config, device=CPU)
    assert result.stopped_by == "max_time"
    assert 0.5 <= result.train_seconds < 5


def test_a_run_that_ends_at_its_epochs_still_improving_says_how_to_use_its_time(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    model = {"hidden_size": 8, "embed_size": 4, "num_layers": 1}
    said = {}
    # Without --max-time, or without validation to show it still improving, nothing is said.
    for max_time, val_fraction in ((None, 0.1), (600.0, 0.0), (600.0, 0.1)):
        heard = Messages()
        training = TrainConfig(batch_size=2, seq_len=10, epochs=2, max_time=max_time)
        data = DataOptions(val_fraction=val_fraction)
        run = train_book(book, out=tmp_path / f"{max_time}-{val_fraction}", model=model,
                         data=data, training=training, device="cpu", reporter=heard)  # fmt: skip
        ended = [line for line in heard.lines if line.startswith("ended at its")]
        said[max_time, val_fraction] = ended
    assert said[None, 0.1] == said[600.0, 0.0] == []
    assert run.result.best_step == run.result.steps  # a tiny model still learning at epoch 2
    (line,) = said[600.0, 0.1]
    assert line.startswith("ended at its 2 epochs after")
    assert "of its 10m (--max-time), its validation still improving; --epochs" in line
    suggested = int(line.split("--epochs ")[1].split()[0])
    assert suggested > 120  # two epochs of this text take well under 10 s of the 600


def test_a_long_fp32_run_on_a_cpu_that_computes_in_bf16_hears_of_it(tmp_path, monkeypatch):
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    model = {"hidden_size": 8, "embed_size": 4, "num_layers": 1}
    training = TrainConfig(batch_size=2, seq_len=10, max_steps=3)

    def heard(has_bf16: bool, after_s: float, from_hidden: int = 8) -> list[str]:
        monkeypatch.setattr("charlm.training.loop.cpu_has_bf16_lstm", lambda: has_bf16)
        monkeypatch.setattr("charlm.training.loop.BF16_NOTED_AFTER_S", after_s)
        monkeypatch.setattr("charlm.training.loop.BF16_NOTED_FROM_HIDDEN", from_hidden)
        messages = Messages()
        train_book(book, out=tmp_path / f"{has_bf16}-{after_s}-{from_hidden}", model=model,
                   training=training, device="cpu", reporter=messages)  # fmt: skip
        return [line for line in messages.lines if "--precision bf16" in line]

    (line,) = heard(True, 0.0)
    assert line.startswith("this CPU computes in bfloat16 (AMX or AVX-512 BF16)")
    # Not on a CPU without bf16 instructions, after a run shorter than a minute, or for a
    # model narrower than 128 units, which bf16 does not speed up.
    assert heard(False, 0.0) == heard(True, 60.0) == heard(True, 0.0, from_hidden=128) == []


@pytest.mark.slow
def test_same_seed_same_training():
    def run():
        torch.manual_seed(0)
        tokenizer, ids = ids_of(TINY_TEXT)
        model = tiny_model(tokenizer.vocab_size)
        return train(
            model, ids, None, TrainConfig(batch_size=4, seq_len=10, max_steps=5, seed=3), device=CPU
        ).train_loss

    assert run() == run()


@pytest.mark.corpus
@pytest.mark.slow
def test_training_on_a_real_book_beats_the_untrained_model_by_far(tmp_path):
    from charlm.training.run import train_book

    book = shared_corpus("timemachine/timemachine.txt")
    untrained = 70  # the book has 70 distinct characters: an untrained model's perplexity
    trained = train_book(
        book,
        out=tmp_path / "tm",
        model={"cell": "lstm", "hidden_size": 128, "num_layers": 1, "embed_size": 32},
        training=TrainConfig(batch_size=32, seq_len=50, max_steps=150, lr=5e-3),
        device="cpu",
    )
    assert trained.result.val_perplexity < untrained / 4


def _subnormals_flushed() -> bool:
    return bool(torch.tensor(1e-38) / 1000 == 0)


def test_subnormals_are_flushed_while_training_on_a_cpu_and_restored_after():
    assert not _subnormals_flushed()  # IEEE behaviour, as the process started
    with subnormals_flushed(torch.device("cpu")):
        assert _subnormals_flushed()
    assert not _subnormals_flushed()
    torch.set_flush_denormal(True)  # whatever the caller had is put back
    try:
        with subnormals_flushed(torch.device("cpu")):
            pass
        assert _subnormals_flushed()
    finally:
        torch.set_flush_denormal(False)
