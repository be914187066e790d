"""int8 models for sampling and scoring on a CPU: 8-bit weights, activations quantized on the fly.

`quantize(model, "int8")` gives a copy of a trained model whose recurrent and output layers
hold their weight matrices as 8-bit integers, one scale per output row, and quantize each
input vector to 8 bits as it arrives ("dynamic" quantization: nothing to calibrate). At
batch 1 a step of a character model is bound by reading its weights, a quarter of the bytes
in int8, so sampling gets several times faster, while the loss moves by well under 1%
(docs/benchmarks.md). The embedding stays float32 (it is a lookup), and so does an output
layer too small to gain: an int8 product has a fixed cost per call (about 45 us at batch 1 on
a 2-core AMD EPYC) that a character model's float32 head (65 x 512, 25 us) never reaches; from
about half a million weights the int8 product is the faster.

Sequences (priming, scoring) run through PyTorch's int8 operators (`quantized::linear_dynamic`,
`torch.quantized_lstm`, `torch.quantized_gru`; the RNN, which PyTorch has no quantized layer
for, through `linear_dynamic`). One token at a time, as a sampler steps, the layers run
charlm's own C step where it was built (int8_step.py), which steps the whole stack in one
call; otherwise PyTorch's operators again. Only the CPU has these kernels; a model whose cell
PyTorch does not implement cannot be quantized, and both say so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from charlm.errors import ConfigError
from charlm.models import int8_step
from charlm.models.cells import CELLS
from charlm.models.classifier import is_classifier
from charlm.models.rnnlm import RNNLM, State
from charlm.models.stepping import WEIGHT_NAMES
from charlm.options import option

QUANTIZATIONS = ("int8",)
# An output layer with fewer weights stays float32: at batch 1 it is faster so (512 inputs x
# 1,024 outputs: 100 us float32, 105 int8; x 4,096: 384 against 199; docs/benchmarks.md).
MIN_INT8_WEIGHTS = 1 << 19


@dataclass(frozen=True)
class InferenceOptions:
    """How a trained model runs when it samples or scores (`charlm generate`, `evaluate`,
    `serve`; `charlm.load(..., quantize=)`), as opposed to what it draws."""

    quantize: str | None = option(
        None,
        "Run the recurrent layers (and an output layer of a word vocabulary) with 8-bit "
        "weights on the CPU: faster at batch 1 for models of a few hundred units, scores "
        "within about 1% (implies --device cpu; docs/sampling.md).",
        choices=QUANTIZATIONS,
        shown_default="float32",
    )
    ngram: bool = option(
        True,
        "Mix the checkpoint's n-gram model (charlm train --ngram) with the network, as it "
        "was trained to; --no-ngram: the network alone. Nothing changes without one.",
        negatable=True,
    )


def _packed(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.ScriptObject:
    """`weight` (out, in) as int8 with one symmetric scale per row, packed for the kernels."""
    weight = weight.detach().float()
    scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # PyTorch deprecates its quantized tensors in favour of torchao, which has no CPU
        # kernels for recurrent layers; _check_kernels refuses plainly once they are gone.
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.float())


def _reduce_range() -> bool:
    # x86's FBGEMM multiplies 8-bit pairs into 16-bit sums that can saturate: it wants
    # activations in 7 bits (what PyTorch's own dynamic quantization does there).
    return torch.backends.quantized.engine in ("fbgemm", "x86")


class Int8Linear(nn.Module):
    """An `nn.Linear` with int8 weights and dynamically quantized inputs."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._packed = _packed(linear.weight, linear.bias)
        self._reduce_range = _reduce_range()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        out = torch.ops.quantized.linear_dynamic(flat, self._packed, self._reduce_range)
        return out.view(*x.shape[:-1], self.out_features)


class Int8Recurrent(nn.Module):
    """Stacked RNN / GRU / LSTM layers (batch first) with int8 weight matrices.

    Built from a layer with PyTorch's parameter names (`weight_ih_l0`, ...). Inference only:
    no dropout, no gradients.
    """

    def __init__(
        self, layer: nn.Module, cell: str, nonlinearity: str = "tanh", native: bool = True
    ) -> None:
        """`native`: step one token at a time in C (int8_step.py) where it was built; False:
        through PyTorch's int8 operators alone."""
        super().__init__()
        self.cell, self.num_layers = cell, layer.num_layers
        self.hidden_size = layer.hidden_size
        self._activation = torch.relu if nonlinearity == "relu" else torch.tanh
        reduce_range = _reduce_range()
        self._reduce_range = reduce_range
        self._packed: list[tuple[torch.ScriptObject, torch.ScriptObject]] = []
        self._stacked: list[torch.ScriptObject] = []  # [W_ih W_hh] of each RNN layer
        self._cell_params = []
        for index in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(layer, f"{n}_l{index}") for n in WEIGHT_NAMES)
            # The biases stay float32; as buffers they give the model its device and dtype.
            self.register_buffer(f"bias_ih_l{index}", b_ih.detach().float().clone())
            self.register_buffer(f"bias_hh_l{index}", b_hh.detach().float().clone())
            b_ih, b_hh = self.get_buffer(f"bias_ih_l{index}"), self.get_buffer(f"bias_hh_l{index}")
            packed_ih, packed_hh = _packed(w_ih, b_ih), _packed(w_hh, b_hh)
            self._packed.append((packed_ih, packed_hh))
            if cell == "rnn":
                self._stacked.append(_packed(torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh))
            else:
                self._cell_params.append(
                    torch.ops.quantized.make_quantized_cell_params_dynamic(
                        packed_ih, packed_hh, b_ih, b_hh, reduce_range
                    )
                )
        self.native = None  # the C step of the layers, where it was built
        if native and int8_step.available():
            self.native = int8_step.NativeStep(layer, cell, nonlinearity)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (batch, seq, input) → outputs (batch, seq, hidden), the state after the last step."""
        x = x.float()
        if self.cell == "lstm":
            output, h, c = torch.quantized_lstm(
                x, list(state), self._cell_params, True, self.num_layers, 0.0, False, False,
                True, dtype=torch.qint8, use_dynamic=True,
            )  # fmt: skip
            return output, (h, c)
        if self.cell == "gru":
            output, h = torch.quantized_gru(
                x, state, self._cell_params, True, self.num_layers, 0.0, False, False, True
            )
            return output, h
        return self._rnn(x, state)

    def one_step(
        self, rows: int
    ) -> Callable[[torch.Tensor, State], tuple[torch.Tensor, State]] | None:
        """What RNNLM.step calls for one token of `rows` rows; None: the layer itself, on a
        sequence of one."""
        if self.native is not None and self.native.takes(rows):
            return self.native
        return self._rnn_step if self.cell == "rnn" else None

    def _rnn_step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step of RNN layers without the C step, x (batch, input) → the top layer's
        output (batch, hidden) and the new state: [x, h] through one int8 product with
        [W_ih W_hh] per layer, as the float32 step does. A 2 x 512 RNN's step took 189 us
        against 297 through `_rnn` on one thread. LSTM and GRU layers have no such step:
        there `torch.quantized_lstm` on a one-token sequence, its gates in C++, was the
        faster (211 against 255 us; docs/benchmarks.md)."""
        linear, hidden = torch.ops.quantized.linear_dynamic, []
        for index, stacked in enumerate(self._stacked):
            x = self._activation(
                linear(torch.cat([x, state[index]], dim=1), stacked, self._reduce_range)
            )
            hidden.append(x)
        return x, torch.stack(hidden)

    def _rnn(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hₜ = φ(Xₜ W_xh + b_ih + Hₜ₋₁ W_hh + b_hh), layer by layer; the input products of a
        whole sequence in one call."""
        batch, steps, _ = x.shape
        linear = torch.ops.quantized.linear_dynamic
        final = []
        for index, (packed_ih, packed_hh) in enumerate(self._packed):
            inputs = linear(x.reshape(batch * steps, -1), packed_ih, self._reduce_range)
            inputs = inputs.view(batch, steps, -1)  # (batch, seq, hidden), b_ih included
            h, outputs = state[index], []
            for t in range(steps):
                h = self._activation(inputs[:, t] + linear(h, packed_hh, self._reduce_range))
                outputs.append(h)
            x = torch.stack(outputs, dim=1)  # the next layer's input
            final.append(h)
        return x, torch.stack(final)


def device_for(device: str, scheme: str | None) -> str:
    """The device to load a model on that `scheme` will quantize (None: float, unchanged):
    the CPU, whose kernels int8 runs; "auto" means the CPU then, another device is refused."""
    if scheme is None:
        return device
    if device not in ("auto", "cpu"):
        raise ConfigError(
            f"--quantize {scheme} runs on the CPU only, not --device {device}; drop one of them"
        )
    return "cpu"


def quantize(
    model: RNNLM, scheme: str = "int8", min_weights: int = MIN_INT8_WEIGHTS, native: bool = True
) -> RNNLM:
    """A copy of `model` for CPU inference with int8 recurrent and output layers (an output
    layer of fewer than `min_weights` weights stays float32: it is faster so). `native`
    False steps one token at a time through PyTorch's int8 operators even where charlm's C
    step was built (to compare the two).

    The copy is in evaluation mode and cannot be trained. Raises ConfigError for what cannot
    be quantized: a model on another device than the CPU, a cell PyTorch does not implement,
    a model run by the scratch implementation (convert it to "torch" first: the same
    weights), a PyTorch build without int8 kernels.
    """
    if scheme not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {scheme!r}; use {', '.join(QUANTIZATIONS)}")
    if is_classifier(model):
        raise ConfigError(
            "int8 quantization covers language models; a classifier (--task classify) runs "
            "in float: drop --quantize"
        )
    if isinstance(model.rnn, Int8Recurrent):
        return model
    if model.reference.device.type != "cpu":
        raise ConfigError(
            "int8 quantization runs on the CPU only; load the model with device='cpu' "
            "(--device cpu)"
        )
    config = model.config
    if CELLS[config.cell].reference is None:
        raise ConfigError(
            f"int8 quantization covers the cells PyTorch implements (rnn, gru, lstm); "
            f"--model {config.cell} has none: sample it without --quantize"
        )
    if config.impl != "torch":
        raise ConfigError(
            f"int8 runs PyTorch's kernels, not the {config.impl} implementation's equations; "
            "to quantize this model, run it as PyTorch's layers: --impl torch --quantize int8 "
            "(in Python, impl='torch')"
        )
    _check_kernels()
    # The float copy is overwritten at once: keep the caller's random stream untouched.
    with torch.random.fork_rng(devices=[]):
        quantized = RNNLM(replace(config))
    quantized.load_state_dict(model.state_dict())
    quantized.rnn = Int8Recurrent(quantized.rnn, config.cell, config.nonlinearity, native)
    quantized.head = _quantize_linears(quantized.head, min_weights)
    stack = quantized.rnn.native
    if (
        stack is not None
        and quantized.label_embedding is None
        and int8_step.NativeNetwork.fits(quantized.embedding, quantized.head)
    ):
        quantized.token_step = int8_step.NativeNetwork(stack, quantized.embedding, quantized.head)
    return quantized.eval()


def _quantize_linears(module: nn.Module, min_weights: int) -> nn.Module:
    """`module` with every `nn.Linear` in it (itself included) of `min_weights` weights or
    more made int8."""
    if isinstance(module, nn.Linear):
        return Int8Linear(module) if module.weight.numel() >= min_weights else module
    for name, child in module.named_children():  # the adaptive softmax's head and clusters
        setattr(module, name, _quantize_linears(child, min_weights))
    return module


def _check_kernels() -> None:
    try:
        _packed(torch.ones(1, 1), None)
    except (RuntimeError, AttributeError) as exc:
        raise ConfigError(
            f"this PyTorch build has no int8 kernels for the CPU ({torch.__version__}, engine "
            f"{torch.backends.quantized.engine!r}); sample without --quantize"
        ) from exc
