"""The scratch cells are the same network as nn.RNN / nn.GRU / nn.LSTM."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import charlm
from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models import CELLS, SCRATCH_CELLS, ModelConfig, build_model, convert
from charlm.tokenizers import get_tokenizer_class
from charlm.training import EvalReport, StepReport, TrainConfig, train

# (cell, extra constructor arguments): the vanilla RNN with both nonlinearities.
VARIANTS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("gru", {}),
    ("lstm", {}),
]
VARIANT_IDS = ["rnn-tanh", "rnn-relu", "gru", "lstm"]


def _pair(cell: str, extra: dict, num_layers: int, dtype: torch.dtype, batch_first: bool = True):
    """A torch layer and a scratch layer with the same weights."""
    args = dict(num_layers=num_layers, batch_first=batch_first, dtype=dtype, **extra)
    reference = CELLS[cell](5, 6, **args)
    scratch = SCRATCH_CELLS[cell](5, 6, **args)
    scratch.load_state_dict(reference.state_dict())
    return reference, scratch


def _initial_state(cell: str, num_layers: int, batch: int, dtype: torch.dtype):
    def make():
        return torch.randn(num_layers, batch, 6, dtype=dtype, requires_grad=True)

    return (make(), make()) if cell == "lstm" else make()


def _flat(state) -> list[torch.Tensor]:
    return [state] if isinstance(state, torch.Tensor) else list(state)


def _run(module, x, state):
    """Outputs, final state and the gradients of a loss that touches all of them."""
    x = x.clone().requires_grad_(True)
    start = None if state is None else tuple(s.detach().clone().requires_grad_() for s in state)
    hx = None if start is None else (start[0] if len(start) == 1 else start)
    output, final = module(x, hx)
    # Random weights on every output so that no gradient is a trivial all-ones sum.
    torch.manual_seed(123)
    loss = (output * torch.randn_like(output)).sum()
    for s in _flat(final):
        loss = loss + (s * torch.randn_like(s)).sum()
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    grads["input"] = x.grad
    for i, s in enumerate(start or ()):
        grads[f"state{i}"] = s.grad
    return output, _flat(final), grads


@pytest.mark.parametrize("cell,extra", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
@pytest.mark.parametrize(
    "dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["float64", "float32"]
)
def test_outputs_states_and_gradients_equal_pytorch(cell, extra, num_layers, carried, dtype, tol):
    torch.manual_seed(0)
    reference, scratch = _pair(cell, extra, num_layers, dtype)
    x = torch.randn(3, 7, 5, dtype=dtype)
    state = None
    if carried:
        state = tuple(_flat(_initial_state(cell, num_layers, 3, dtype)))

    out_ref, final_ref, grads_ref = _run(reference, x, state)
    out_scr, final_scr, grads_scr = _run(scratch, x, state)

    torch.testing.assert_close(out_scr, out_ref, atol=tol, rtol=0)
    for mine, theirs in zip(final_scr, final_ref, strict=True):
        torch.testing.assert_close(mine, theirs, atol=tol, rtol=0)
    assert grads_scr.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads_scr[name], grad, atol=tol, rtol=0, msg=name)


@pytest.mark.parametrize("cell,extra", VARIANTS, ids=VARIANT_IDS)
def test_time_major_and_unbatched_inputs_work_like_pytorch(cell, extra):
    torch.manual_seed(0)
    reference, scratch = _pair(cell, extra, 2, torch.float64, batch_first=False)
    x = torch.randn(7, 3, 5, dtype=torch.float64)  # (seq, batch, features)
    for inputs in (x, x[:, 0]):  # batched, then one unbatched sequence
        out_ref, final_ref = reference(inputs)
        out_scr, final_scr = scratch(inputs)
        torch.testing.assert_close(out_scr, out_ref)
        for mine, theirs in zip(_flat(final_scr), _flat(final_ref), strict=True):
            torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("cell", list(CELLS))
def test_same_seed_gives_the_same_initial_weights(cell):
    torch.manual_seed(7)
    reference = CELLS[cell](5, 6, num_layers=2)
    torch.manual_seed(7)
    scratch = SCRATCH_CELLS[cell](5, 6, num_layers=2)
    theirs, mine = reference.state_dict(), scratch.state_dict()
    assert list(mine) == list(theirs)  # same names, in the same order
    for name in theirs:
        assert torch.equal(mine[name], theirs[name]), name


@pytest.mark.parametrize("one_hot", [False, True], ids=["embedding", "one-hot"])
def test_language_models_of_both_impls_start_identical(one_hot):
    weights = {}
    for impl in ("torch", "scratch"):
        torch.manual_seed(3)
        config = ModelConfig(
            vocab_size=11, cell="gru", impl=impl, one_hot=one_hot, embed_size=4, hidden_size=6
        )
        weights[impl] = build_model(config).state_dict()
    assert list(weights["scratch"]) == list(weights["torch"])
    for name, tensor in weights["torch"].items():
        assert torch.equal(weights["scratch"][name], tensor), name
    assert ("embedding.weight" in weights["torch"]) is not one_hot


def test_one_hot_input_has_vocabulary_size():
    model = build_model(ModelConfig(vocab_size=11, cell="lstm", one_hot=True, hidden_size=6))
    assert model.rnn.weight_ih_l0.shape == (4 * 6, 11)
    logits, _ = model(torch.randint(0, 11, (2, 5)))
    assert logits.shape == (2, 5, 11)


def test_dropout_is_applied_between_layers_only_while_training():
    torch.manual_seed(0)
    reference, scratch = _pair("lstm", {}, 2, torch.float32)
    reference.dropout = scratch.dropout = 0.5
    x = torch.randn(3, 7, 5)
    reference.eval(), scratch.eval()
    torch.testing.assert_close(scratch(x)[0], reference(x)[0])
    scratch.train()
    assert not torch.allclose(scratch(x)[0], reference(x)[0])


@pytest.mark.parametrize("cell", list(CELLS))
def test_convert_both_ways_keeps_the_function(cell):
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=9, cell=cell, embed_size=4, hidden_size=6))
    model.eval()
    tokens = torch.randint(0, 9, (2, 8))
    expected, _ = model(tokens)

    rng_before = torch.random.get_rng_state()
    scratch = convert(model, "scratch")
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # caller's stream untouched
    assert isinstance(scratch.rnn, SCRATCH_CELLS[cell])
    assert scratch.config.impl == "scratch" and not scratch.training
    torch.testing.assert_close(scratch(tokens)[0], expected)

    back = convert(scratch, "torch")
    assert isinstance(back.rnn, CELLS[cell])
    torch.testing.assert_close(back(tokens)[0], expected)
    assert convert(back, "torch") is back
    with pytest.raises(ConfigError):
        convert(model, "numpy")


def test_unknown_impl_is_a_config_error_and_old_configs_default_to_torch():
    with pytest.raises(ConfigError, match="unknown impl"):
        ModelConfig(vocab_size=5, impl="cuda")
    old = {
        "vocab_size": 5,
        "cell": "gru",
        "embed_size": 4,
        "hidden_size": 6,
        "num_layers": 1,
        "dropout": 0.0,
    }
    config = ModelConfig.from_dict(old)
    assert config.impl == "torch" and config.one_hot is False


@pytest.mark.parametrize("cell", list(CELLS))
def test_layers_without_bias_equal_pytorch(cell):
    torch.manual_seed(0)
    reference = CELLS[cell](5, 6, num_layers=2, bias=False, dtype=torch.float64)
    scratch = SCRATCH_CELLS[cell](5, 6, num_layers=2, bias=False, dtype=torch.float64)
    scratch.load_state_dict(reference.state_dict())  # strict: no bias parameters on either side
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(scratch(x)[0], reference(x)[0])


@pytest.mark.parametrize("cell", list(CELLS))
def test_a_state_of_the_wrong_shape_is_refused_like_pytorch(cell):
    scratch = SCRATCH_CELLS[cell](5, 6, num_layers=2, batch_first=True)
    wrong = torch.zeros(2, 4, 6)  # batch 4 for an input of batch 3
    hx = (wrong, wrong) if cell == "lstm" else wrong
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 3, 6\), got \[2, 4, 6\]"):
        scratch(torch.zeros(3, 7, 5), hx)


def test_bidirectional_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="unidirectional"):
        SCRATCH_CELLS["lstm"](3, 4, bidirectional=True)


class _Curve:
    def __init__(self) -> None:
        self.losses: list[float] = []

    def message(self, text: str) -> None:
        pass

    def on_step(self, report: StepReport) -> None:
        self.losses.append(report.train_loss)

    def on_eval(self, report: EvalReport) -> None:
        pass


def _loss_curve(ids, cell: str, impl: str, steps: int) -> list[float]:
    config = ModelConfig(
        vocab_size=int(ids.max()) + 1,
        cell=cell,
        impl=impl,
        embed_size=8,
        hidden_size=16,
        num_layers=2,
        dropout=0.0,
    )
    training = TrainConfig(batch_size=4, seq_len=8, max_steps=steps, lr=1e-2, seed=5)
    torch.manual_seed(training.seed)
    curve = _Curve()
    train(
        build_model(config),
        ids,
        None,
        training,
        device=torch.device("cpu"),
        reporter=curve,
        report_interval_s=0,
    )
    return curve.losses


@pytest.mark.parametrize("cell", list(CELLS))
def test_training_gives_the_same_loss_curve_for_50_steps(cell, tiny_book):
    text = tiny_book.read_text(encoding="utf-8")
    ids = get_tokenizer_class("char").train(text).encode_array(text)
    torch_curve = _loss_curve(ids, cell, "torch", 50)
    scratch_curve = _loss_curve(ids, cell, "scratch", 50)
    assert len(torch_curve) == len(scratch_curve) == 50
    assert torch_curve[-1] < torch_curve[0]  # it did learn something
    for step, (a, b) in enumerate(zip(torch_curve, scratch_curve, strict=True), start=1):
        assert abs(a - b) < 1e-4, f"step {step}: torch {a} vs scratch {b}"


def test_scratch_checkpoint_trains_saves_loads_and_samples(tiny_book, tmp_path):
    model = {
        "cell": "lstm",
        "impl": "scratch",
        "embed_size": 8,
        "hidden_size": 16,
        "num_layers": 2,
        "dropout": 0.0,
    }
    training = TrainConfig(batch_size=4, seq_len=8, max_steps=50, seed=1)
    runs = {}
    for impl in ("scratch", "torch"):
        runs[impl] = charlm.train_book(
            tiny_book,
            out=tmp_path / impl,
            device="cpu",
            model=model | {"impl": impl},
            training=training,
        )
    # Same seed, same data: the same run, whichever implementation computed it.
    for name in ("train_loss", "val_loss"):
        mine, theirs = (getattr(runs[impl].result, name) for impl in ("scratch", "torch"))
        assert mine == pytest.approx(theirs, abs=1e-4), name

    config = json.loads((tmp_path / "scratch" / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["impl"] == "scratch"
    as_trained = charlm.load(tmp_path / "scratch", device="cpu")
    assert isinstance(as_trained.model.rnn, SCRATCH_CELLS["lstm"])
    fast = charlm.load(tmp_path / "scratch", device="cpu", impl="torch")
    assert isinstance(fast.model.rnn, nn.LSTM)
    text = as_trained.generate(prefix="the ", length=40, temperature=1.0, seed=4)
    assert len(text) == len("the ") + 40
    assert fast.generate(prefix="the ", length=40, temperature=1.0, seed=4) == text
    score = as_trained.score("the quick brown fox")
    assert score.cross_entropy == pytest.approx(
        fast.score("the quick brown fox").cross_entropy, abs=1e-5
    )


def test_cli_trains_a_scratch_one_hot_model(tiny_book, tmp_path):
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(tiny_book),
            "--model",
            "gru",
            "--impl",
            "scratch",
            "--one-hot",
            "--layers",
            "1",
            "--hidden",
            "8",
            "--seq-len",
            "8",
            "--batch-size",
            "4",
            "--max-steps",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["impl"] == "scratch"
    assert config["model"]["one_hot"] is True
    sampled = CliRunner().invoke(
        cli, ["generate", str(out), "--prefix", "the", "--length", "12", "--seed", "1"]
    )
    assert sampled.exit_code == 0, sampled.output
    assert sampled.output.startswith("the")
    assert len(sampled.output) == len("the") + 12 + 1  # 12 characters and the final newline


def test_cli_rejects_an_unknown_impl_in_one_line(tiny_book):
    result = CliRunner().invoke(cli, ["train", str(tiny_book), "--impl", "numpy"])
    assert result.exit_code == 2
    assert "'numpy' is not one of 'torch', 'scratch'" in result.output
