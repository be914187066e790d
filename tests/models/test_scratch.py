"""The scratch cells are the same networks as nn.RNN / nn.GRU / nn.LSTM, with right gradients.

Every test of a layer runs over `TEST_CELLS`: the package's cells plus a minimal gated unit
(MGU) defined here, which PyTorch does not have. The scratch-vs-torch tests take only the
cells with a reference (`with_reference`), so a cell is never compared with itself; every
cell, the MGU included, has its gradients checked against finite differences.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import charlm
from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models import (
    CELLS,
    NONLINEARITIES,
    CellSpec,
    ModelConfig,
    ScratchRecurrent,
    build_model,
    cell_registry,
    convert,
    with_reference,
)
from charlm.models.scratch import affine
from charlm.tokenizers import get_tokenizer_class
from charlm.training import EvalReport, StepReport, TrainConfig, train


def mgu_cell(x, h, weights):
    """One step of a minimal gated unit (Zhou et al., 2016), in the form of PyTorch's GRU."""
    w_ih, w_hh, b_ih, b_hh = weights
    x_f, x_n = affine(x, w_ih, b_ih).chunk(2, dim=-1)
    h_f, h_n = affine(h, w_hh, b_hh).chunk(2, dim=-1)
    f = torch.sigmoid(x_f + h_f)  # Fₜ = σ(Xₜ W_xf + Hₜ₋₁ W_hf + b_f)
    h_tilde = torch.tanh(x_n + f * h_n)  # H̃ₜ = tanh(Xₜ W_xh + b_ih + Fₜ ⊙ (Hₜ₋₁ W_hh + b_hh))
    return (1 - f) * h + f * h_tilde  # Hₜ = (1 − Fₜ) ⊙ Hₜ₋₁ + Fₜ ⊙ H̃ₜ


class ScratchMGU(ScratchRecurrent):
    """A test-only cell with no PyTorch counterpart: it must get no scratch-vs-torch test."""

    gates = 2

    def step(self, x, state, weights):
        return (mgu_cell(x, state[0], weights),)


class DetachedMGU(ScratchMGU):
    """The MGU with a bug its outputs do not show: no gradient flows back to Hₜ₋₁."""

    def step(self, x, state, weights):
        return (mgu_cell(x, state[0].detach(), weights),)


TEST_CELLS = cell_registry(*CELLS.values(), CellSpec("mgu", ScratchMGU, None))


def _variants(specs) -> list:
    """(spec, extra constructor arguments) per cell; the vanilla RNN with both nonlinearities."""
    cases = []
    for spec in specs:
        if spec.nonlinearity:
            for phi in NONLINEARITIES:
                cases.append(pytest.param(spec, {"nonlinearity": phi}, id=f"{spec.name}-{phi}"))
        else:
            cases.append(pytest.param(spec, {}, id=spec.name))
    return cases


EQUIVALENCE_CASES = _variants(with_reference(TEST_CELLS))  # scratch vs PyTorch
EVERY_CELL = _variants(TEST_CELLS.values())  # finite differences, scratch-only behaviour
REFERENCED = [pytest.param(spec, id=spec.name) for spec in with_reference(TEST_CELLS)]
# Whole language models are built through ModelConfig, which knows the package's cells only.
PACKAGE_CELLS = [spec.name for spec in with_reference(CELLS)]


def _pair(spec: CellSpec, extra: dict, num_layers: int, dtype, batch_first: bool = True):
    """A torch layer and a scratch layer with the same weights."""
    assert not issubclass(spec.reference, ScratchRecurrent)  # never a cell against itself
    args = dict(num_layers=num_layers, batch_first=batch_first, dtype=dtype, **extra)
    reference = spec.reference(5, 6, **args)
    scratch = spec.scratch(5, 6, **args)
    scratch.load_state_dict(reference.state_dict())
    return reference, scratch


def _initial_state(spec: CellSpec, num_layers: int, batch: int, dtype: torch.dtype, size=6):
    """A random (layers, batch, hidden) tensor per part of the state, needing gradients."""
    shape = (num_layers, batch, size)
    return tuple(
        torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(spec.state_size)
    )


def _flat(state) -> list[torch.Tensor]:
    return [state] if isinstance(state, torch.Tensor) else list(state)


def _run(module, x, state):
    """Outputs, final state and the gradients of a loss that touches all of them."""
    x = x.detach().clone().requires_grad_(True)
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


@pytest.mark.parametrize("spec,extra", EQUIVALENCE_CASES)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
@pytest.mark.parametrize(
    "dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["float64", "float32"]
)
@pytest.mark.slow
def test_outputs_states_and_gradients_equal_pytorch(spec, extra, num_layers, carried, dtype, tol):
    torch.manual_seed(0)
    reference, scratch = _pair(spec, extra, num_layers, dtype)
    x = torch.randn(3, 7, 5, dtype=dtype)
    state = _initial_state(spec, num_layers, 3, dtype) if carried else None

    out_ref, final_ref, grads_ref = _run(reference, x, state)
    out_scr, final_scr, grads_scr = _run(scratch, x, state)

    torch.testing.assert_close(out_scr, out_ref, atol=tol, rtol=0)
    for mine, theirs in zip(final_scr, final_ref, strict=True):
        torch.testing.assert_close(mine, theirs, atol=tol, rtol=0)
    assert grads_scr.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads_scr[name], grad, atol=tol, rtol=0, msg=name)


@pytest.mark.parametrize("spec,extra", EQUIVALENCE_CASES)
def test_time_major_and_unbatched_inputs_work_like_pytorch(spec, extra):
    torch.manual_seed(0)
    reference, scratch = _pair(spec, extra, 2, torch.float64, batch_first=False)
    x = torch.randn(7, 3, 5, dtype=torch.float64)  # (seq, batch, features)
    for inputs in (x, x[:, 0]):  # batched, then one unbatched sequence
        out_ref, final_ref = reference(inputs)
        out_scr, final_scr = scratch(inputs)
        torch.testing.assert_close(out_scr, out_ref)
        for mine, theirs in zip(_flat(final_scr), _flat(final_ref), strict=True):
            torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("spec", REFERENCED)
def test_same_seed_gives_the_same_initial_weights(spec):
    torch.manual_seed(7)
    reference = spec.reference(5, 6, num_layers=2)
    torch.manual_seed(7)
    scratch = spec.scratch(5, 6, num_layers=2)
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
    reference, scratch = _pair(CELLS["lstm"], {}, 2, torch.float32)
    reference.dropout = scratch.dropout = 0.5
    x = torch.randn(3, 7, 5)
    reference.eval(), scratch.eval()
    torch.testing.assert_close(scratch(x)[0], reference(x)[0])
    scratch.train()
    assert not torch.allclose(scratch(x)[0], reference(x)[0])


@pytest.mark.parametrize("cell", PACKAGE_CELLS)
def test_convert_both_ways_keeps_the_function(cell):
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=9, cell=cell, embed_size=4, hidden_size=6))
    model.eval()
    tokens = torch.randint(0, 9, (2, 8))
    expected, _ = model(tokens)

    rng_before = torch.random.get_rng_state()
    scratch = convert(model, "scratch")
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # caller's stream untouched
    assert isinstance(scratch.rnn, CELLS[cell].scratch)
    assert scratch.config.impl == "scratch" and not scratch.training
    torch.testing.assert_close(scratch(tokens)[0], expected)

    back = convert(scratch, "torch")
    assert isinstance(back.rnn, CELLS[cell].reference)
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


@pytest.mark.parametrize("spec", REFERENCED)
def test_layers_without_bias_equal_pytorch(spec):
    torch.manual_seed(0)
    reference = spec.reference(5, 6, num_layers=2, bias=False, dtype=torch.float64)
    scratch = spec.scratch(5, 6, num_layers=2, bias=False, dtype=torch.float64)
    scratch.load_state_dict(reference.state_dict())  # strict: no bias parameters on either side
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(scratch(x)[0], reference(x)[0])


@pytest.mark.parametrize("spec,extra", EVERY_CELL)
def test_a_state_of_the_wrong_shape_is_refused_like_pytorch(spec, extra):
    scratch = spec.scratch(5, 6, num_layers=2, batch_first=True, **extra)
    wrong = torch.zeros(2, 4, 6)  # batch 4 for an input of batch 3
    hx = wrong if spec.state_size == 1 else (wrong,) * spec.state_size
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 3, 6\), got \[2, 4, 6\]"):
        scratch(torch.zeros(3, 7, 5), hx)


def test_bidirectional_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="unidirectional"):
        CELLS["lstm"].scratch(3, 4, bidirectional=True)


def _matches_finite_differences(layer: ScratchRecurrent, x, state) -> bool:
    """Whether autograd's gradients of every output, with respect to the input, the initial
    state and every parameter, equal central finite differences (float64)."""
    names = [name for name, _ in layer.named_parameters()]
    weights = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]

    def outputs(x, *rest):
        start, params = rest[: len(state)], rest[len(state) :]
        hx = start[0] if len(start) == 1 else start
        output, final = torch.func.functional_call(layer, dict(zip(names, params)), (x, hx))
        return (output, *_flat(final))

    inputs = (x.detach().clone().requires_grad_(True), *state, *weights)
    return torch.autograd.gradcheck(outputs, inputs, raise_exception=False)


def _tiny_layer(spec: CellSpec, extra: dict, cls=None):
    """A 2-layer float64 layer of `spec` (or `cls`), 3 inputs, 4 hidden units; input and state."""
    torch.manual_seed(0)
    layer = (cls or spec.scratch)(3, 4, num_layers=2, dtype=torch.float64, **extra).eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64)  # (seq, batch, features)
    return layer, x, _initial_state(spec, 2, 2, torch.float64, size=4)


@pytest.mark.parametrize("spec,extra", EVERY_CELL)
@pytest.mark.slow
def test_gradients_equal_finite_differences(spec, extra):
    layer, x, state = _tiny_layer(spec, extra)
    assert _matches_finite_differences(layer, x, state)
    # ... and none is trivially zero: every weight and the whole input reach the outputs.
    _, _, grads = _run(layer, x, state)
    for name, grad in grads.items():
        assert grad.abs().min() > 0 if name == "input" else grad.abs().sum() > 0, name


def test_the_finite_difference_check_catches_a_wrong_gradient():
    spec = TEST_CELLS["mgu"]
    layer, x, state = _tiny_layer(spec, {}, cls=DetachedMGU)
    assert not _matches_finite_differences(layer, x, state)


def test_a_cell_without_reference_gets_finite_differences_and_no_comparison_with_torch():
    assert TEST_CELLS["mgu"].reference is None
    assert [case.id for case in EQUIVALENCE_CASES] == ["rnn-tanh", "rnn-relu", "gru", "lstm"]
    assert [case.id for case in EVERY_CELL][-1] == "mgu"


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


@pytest.mark.parametrize("cell", PACKAGE_CELLS)
@pytest.mark.slow
def test_training_gives_the_same_loss_curve_for_50_steps(cell, tiny_book):
    text = tiny_book.read_text(encoding="utf-8")
    ids = get_tokenizer_class("char").train(text).encode_array(text)
    torch_curve = _loss_curve(ids, cell, "torch", 50)
    scratch_curve = _loss_curve(ids, cell, "scratch", 50)
    assert len(torch_curve) == len(scratch_curve) == 50
    assert torch_curve[-1] < torch_curve[0]  # it did learn something
    for step, (a, b) in enumerate(zip(torch_curve, scratch_curve, strict=True), start=1):
        assert abs(a - b) < 1e-4, f"step {step}: torch {a} vs scratch {b}"


@pytest.mark.slow
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
    assert isinstance(as_trained.model.rnn, CELLS["lstm"].scratch)
    fast = charlm.load(tmp_path / "scratch", device="cpu", impl="torch")
    assert isinstance(fast.model.rnn, nn.LSTM)
    text = as_trained.generate(prefix="the ", length=40, temperature=1.0, seed=4)
    assert len(text) == len("the ") + 40
    assert fast.generate(prefix="the ", length=40, temperature=1.0, seed=4) == text
    score = as_trained.score("the quick brown fox")
    assert score.cross_entropy == pytest.approx(
        fast.score("the quick brown fox").cross_entropy, abs=1e-5
    )


@pytest.mark.slow
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
